#!/usr/bin/env bash
# Installs the command-line tools some tests call, when they are missing:
#   pdftotext, pdftoppm (Debian's poppler-utils): the statements' PDFs are read back as text;
#   chromium: the web app's browser test; wasm-opt (binaryen): bank-wasm's size.
# Installing needs apt-get and root (CI runs as root). A tool that cannot be installed is left out
# with a warning, and its tests skip saying why; with BANK_REQUIRE_SERVICES=1 this fails instead
# (and those tests would fail too).
set -euo pipefail

missing=()
command -v pdftotext >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
# The web app's browser test (bank-wasm/tests/browser.test.mjs) drives Debian's chromium; wasm-opt
# (binaryen) makes bank-wasm smaller (scripts/build-wasm.sh works without it).
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v wasm-opt >/dev/null 2>&1 || missing+=(binaryen)

if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "installing ${missing[*]}" >&2
if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
  export DEBIAN_FRONTEND=noninteractive
  if apt-get install -y -q "${missing[@]}" >&2 || { apt-get update -q >&2 && apt-get install -y -q "${missing[@]}" >&2; }; then
    exit 0
  fi
fi
message="cannot install ${missing[*]} (needs apt-get as root); the tests that use them will skip"
if [[ "${BANK_REQUIRE_SERVICES:-0}" == 1 ]]; then
  echo "error: ${message/will skip/are required (BANK_REQUIRE_SERVICES=1)}" >&2
  exit 1
fi
echo "warning: ${message}" >&2
