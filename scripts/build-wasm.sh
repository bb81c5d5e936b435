#!/usr/bin/env bash
# Builds bank-wasm (the JS client: bank-client compiled to wasm32 with wasm-bindgen bindings and
# TypeScript declarations) into the npm package bank-wasm/pkg, and the web app's copy of it:
#
#   bank-wasm/pkg/web/   wasm-bindgen --target web     (ES module; browsers)
#   bank-wasm/pkg/node/  wasm-bindgen --target nodejs  (CommonJS; Node)
#   bank-wasm/pkg/package.json, README.md              (from bank-wasm/npm/)
#   bank-wasm/web/pkg/   the web target again, served by `bank-server serve` with the web app
#
# Toolchain (rustup has no wasm32 target on these machines and cannot fetch one):
#   - Debian's rustc-web (a rustc that targets wasm32) and rust-web-src (the standard library's
#     source: std is built for wasm32 with -Zbuild-std), and lld-19 (wasm-ld-19 links);
#     installed with apt-get when missing (needs root);
#   - the wasm-bindgen CLI of exactly the version Cargo.lock holds for the wasm-bindgen crate (the
#     two must match), installed with `cargo install` into $BANK_WASM_TOOLS_DIR when missing;
#   - wasm-opt -Oz (Debian's binaryen) when available; without it the module is only larger.
# Prints the raw and gzipped size of each module.
#
# Environment:
#   BANK_WASM_TARGET_DIR  build folder of the wasm target (default: $CARGO_TARGET_DIR-wasm, else
#                         ~/.cache/bank-target-wasm). Kept apart from the native one: another rustc.
#   BANK_WASM_RUSTC       the wasm-capable rustc (default /usr/bin/rustc, Debian's rustc-web)
#   BANK_WASM_TOOLS_DIR   where the wasm-bindgen CLI is installed (default ~/.cache/bank-wasm-tools)
#   BANK_WASM_NO_INSTALL=1  never install anything: a missing tool is an error
#
# Exit status: 0 built; 2 the toolchain is missing and could not be installed (scripts/test.sh
# skips the JS tests then, or fails under BANK_REQUIRE_SERVICES=1); anything else a failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"

native_target_dir="${CARGO_TARGET_DIR:-${HOME:-/tmp}/.cache/bank-target}"
target_dir="${BANK_WASM_TARGET_DIR:-${native_target_dir}-wasm}"
wasm_rustc="${BANK_WASM_RUSTC:-/usr/bin/rustc}"
tools_dir="${BANK_WASM_TOOLS_DIR:-${HOME:-/tmp}/.cache/bank-wasm-tools}"
rust_src="/usr/lib/rustlib/src/rust/library/Cargo.lock"
linker="wasm-ld-19"

step() {
  printf '\n==> %s\n' "$*" >&2
}
missing_toolchain() {
  echo "error: $*" >&2
  exit 2
}
can_install() {
  [[ "${BANK_WASM_NO_INSTALL:-0}" != 1 ]]
}

# --- Debian's wasm-capable rustc, std's source, the linker ----------------------------------------
toolchain_ok() {
  [[ -x "$wasm_rustc" ]] && "$wasm_rustc" --print target-list 2>/dev/null | grep -qx wasm32-unknown-unknown &&
    [[ -f "$rust_src" ]] && command -v "$linker" >/dev/null 2>&1
}
if ! toolchain_ok; then
  packages=(rustc-web rust-web-src lld-19)
  if can_install && command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
    step "installing ${packages[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${packages[@]}" >&2 ||
      { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${packages[@]}" >&2; } ||
      missing_toolchain "apt-get could not install ${packages[*]}"
  fi
  toolchain_ok || missing_toolchain "no wasm32 toolchain: need ${wasm_rustc} targeting wasm32-unknown-unknown (Debian rustc-web), ${rust_src} (rust-web-src) and ${linker} (lld-19); install them as root with: apt-get install ${packages[*]}"
fi

# --- The wasm-bindgen CLI of Cargo.lock's wasm-bindgen ---------------------------------------------
bindgen_version="$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)"
[[ -n "$bindgen_version" ]] || { echo "error: no wasm-bindgen in Cargo.lock" >&2; exit 1; }
bindgen="${tools_dir}/bin/wasm-bindgen"
if ! [[ -x "$bindgen" ]] || [[ "$("$bindgen" --version 2>/dev/null)" != "wasm-bindgen ${bindgen_version}" ]]; then
  can_install || missing_toolchain "no wasm-bindgen ${bindgen_version} in ${tools_dir}/bin (BANK_WASM_NO_INSTALL=1)"
  step "installing wasm-bindgen-cli ${bindgen_version} into ${tools_dir} (cargo install, once)"
  # With the native toolchain (rustup's), in its own build folder.
  env -u RUSTC -u RUSTC_BOOTSTRAP CARGO_TARGET_DIR="${tools_dir}/build" \
    nice -n 19 cargo install wasm-bindgen-cli --version "=${bindgen_version}" --no-default-features \
    --root "$tools_dir" --force >&2 ||
    missing_toolchain "cargo install wasm-bindgen-cli ${bindgen_version} failed"
  rm -rf "${tools_dir}/build"
fi

# --- Build ---------------------------------------------------------------------------------------
# `--release` with the size settings given to this build only (the release profile stays as the
# native builds want it): smallest code, whole-program LTO, one codegen unit, abort on panic (std
# is rebuilt with panic_abort), no debug info.
step "cargo build --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort -p bank-wasm (rustc: $("$wasm_rustc" --version))"
RUSTC="$wasm_rustc" RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$target_dir" \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$linker" \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=z CARGO_PROFILE_RELEASE_LTO=fat CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
  CARGO_PROFILE_RELEASE_PANIC=abort CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=debuginfo \
  CARGO_INCREMENTAL=0 \
  nice -n 19 cargo build --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort -p bank-wasm
module="${target_dir}/wasm32-unknown-unknown/release/bank_wasm.wasm"

# --- Bindings, optimization, the package ----------------------------------------------------------
pkg="${root}/bank-wasm/pkg"
rm -rf "$pkg" && mkdir -p "$pkg"
step "wasm-bindgen ${bindgen_version}: web and nodejs"
"$bindgen" --target web --out-dir "${pkg}/web" --out-name bank_wasm "$module"
"$bindgen" --target nodejs --out-dir "${pkg}/node" --out-name bank_wasm "$module"
# The web build is ES modules; tell Node and bundlers so (the package root stays CommonJS for node/).
printf '{\n  "type": "module"\n}\n' >"${pkg}/web/package.json"

# wasm-opt -Oz, kept only if the optimized module still loads: old binaryen releases (Debian 12's
# 108) rewrite wasm-bindgen's externref table into one the engines refuse at start-up
# ("WebAssembly.Table.set(): Argument 1 is invalid"); then the modules stay unoptimized (larger).
loads_in_node() {
  node -e "require(process.argv[1])" "${pkg}/node/bank_wasm.js" >/dev/null 2>&1
}
if command -v wasm-opt >/dev/null 2>&1; then
  step "wasm-opt -Oz ($(wasm-opt --version))"
  for out in web node; do
    wasm="${pkg}/${out}/bank_wasm_bg.wasm"
    cp "$wasm" "${wasm}.orig"
    # The features rustc enables by default for wasm32 (wasm-opt must be told which it may keep).
    wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
      --enable-mutable-globals --enable-reference-types --enable-multivalue "$wasm" -o "${wasm}.opt"
    mv "${wasm}.opt" "$wasm"
  done
  if command -v node >/dev/null 2>&1 && ! loads_in_node; then
    echo "warning: $(wasm-opt --version) made a module the JS engine refuses; keeping the unoptimized modules (a newer binaryen makes them smaller)" >&2
    for out in web node; do mv "${pkg}/${out}/bank_wasm_bg.wasm.orig" "${pkg}/${out}/bank_wasm_bg.wasm"; done
  fi
  rm -f "${pkg}"/*/bank_wasm_bg.wasm.orig
else
  echo "wasm-opt not found (Debian package binaryen): the modules are left unoptimized, larger" >&2
fi
if command -v node >/dev/null 2>&1 && ! loads_in_node; then
  echo "error: the nodejs build of bank-wasm does not load in node" >&2
  exit 1
fi

version="$(awk -F'"' '/^\[workspace.package\]/ {p = 1} p && /^version/ {print $2; exit}' Cargo.toml)"
sed "s/\"version\": \"0.0.0\"/\"version\": \"${version}\"/" bank-wasm/npm/package.json >"${pkg}/package.json"
cp bank-wasm/npm/README.md "${pkg}/README.md"
cp LICENSE "${pkg}/LICENSE" 2>/dev/null || true

# The web app serves its own copy of the web build (bank-server serves one folder).
rm -rf bank-wasm/web/pkg && mkdir -p bank-wasm/web/pkg
cp "${pkg}/web/bank_wasm.js" "${pkg}/web/bank_wasm_bg.wasm" bank-wasm/web/pkg/

# --- Sizes ---------------------------------------------------------------------------------------
step "sizes (goal: at most 300 KB gzipped)"
for file in "$module" "${pkg}/web/bank_wasm_bg.wasm" "${pkg}/web/bank_wasm.js" "${pkg}/node/bank_wasm_bg.wasm"; do
  raw=$(stat -c %s "$file")
  gz=$(gzip -9 -c "$file" | wc -c)
  printf '%-70s %8d bytes raw %8d bytes gzipped\n' "${file#"${root}/"}" "$raw" "$gz"
done
echo "bank-wasm/pkg built (wasm-bindgen ${bindgen_version})"
