#!/usr/bin/env bash
# Builds the bank-server container image (Dockerfile) where no image registry is reachable, and
# checks it:
#   1. a Debian base (bookworm, minbase + gcc, libc6-dev, ca-certificates, tzdata) made with
#      debootstrap from Debian's packages and imported (podman import) as localhost/bank-debian-base
#      (once; kept in the image store);
#   2. the static binary, compiled on the host with the Dockerfile's `build` stage flags
#      (RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target
#      x86_64-unknown-linux-gnu -p bank-server), copied to .image/bank-server;
#   3. buildah bud (vfs storage, chroot isolation, docker format for HEALTHCHECK) with
#      DEBIAN_IMAGE=localhost/bank-debian-base and BINARY_FROM=context;
#   4. the image's contents: user 65532, entrypoint, health check, a static binary, no shell or
#      other tools; its size;
#   5. a run of the image with the embedded backend (`serve --demo`, read-only root): /health/ready
#      answers 200 and the demo user logs in (password + TOTP) and lists her accounts. With
#      `podman run` where the sandbox allows containers; where it does not, the script says so and
#      runs the image's own entrypoint, as its user, in a chroot of the image's root file system.
#
# Usage: scripts/build-image.sh [--tag TAG] [--no-run]
# Environment:
#   CARGO_TARGET_DIR     build folder (default: $HOME/.cache/bank-target, as scripts/test.sh)
#   BANK_IMAGE_STORAGE   container storage root (default: $HOME/.cache/bank-image-storage)
#   DEBIAN_MIRROR        default http://deb.debian.org/debian
# Needs root (debootstrap, chroot) and the Debian packages buildah, podman and debootstrap.
# Opt-in, not part of scripts/test.sh: the first run takes a debootstrap and a release build.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TAG="dev"
RUN=1
while (($#)); do
  case "$1" in
    --tag) TAG="${2:?--tag needs a value}"; shift 2 ;;
    --no-run) RUN=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || { echo "error: --tag ${TAG}: not an image tag" >&2; exit 2; }

# --- Tools: refuse to start without them, naming the package. -------------------------------------
missing=()
for tool in buildah:buildah podman:podman debootstrap:debootstrap cargo:"rustup (https://rustup.rs) or Debian's cargo" curl:curl jq:jq readelf:binutils; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool%%:*} (install: ${tool#*:})")
done
if ((${#missing[@]})); then
  echo "error: scripts/build-image.sh needs tools that are missing:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  echo "on Debian: apt-get install buildah podman debootstrap curl jq binutils" >&2
  exit 1
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "error: scripts/build-image.sh must run as root (debootstrap and chroot need it)" >&2
  exit 1
fi

STORAGE="${BANK_IMAGE_STORAGE:-${HOME:-/tmp}/.cache/bank-image-storage}"
mkdir -p "$STORAGE/root" "$STORAGE/runroot"
STORE=(--storage-driver vfs --root "$STORAGE/root" --runroot "$STORAGE/runroot")
BASE=localhost/bank-debian-base:bookworm
IMAGE="localhost/bank-server:${TAG}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/tmp}/.cache/bank-target}"
step() {
  printf '\n==> image: %s\n' "$*"
}

# --- 1. Debian base -------------------------------------------------------------------------------
if podman "${STORE[@]}" image exists "$BASE"; then
  step "Debian base ${BASE} (already imported)"
else
  step "Debian base: debootstrap bookworm (minbase) and podman import as ${BASE}"
  rootfs="$(mktemp -d "${TMPDIR:-/tmp}/bank-debian-rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates,tzdata \
    bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" --numeric-owner -c . | podman "${STORE[@]}" import --change 'CMD ["/bin/bash"]' - "$BASE"
  rm -rf "$rootfs"
  trap - EXIT
fi

# --- 2. The static binary -------------------------------------------------------------------------
step "bank-server, static (cargo build --release --target x86_64-unknown-linux-gnu, +crt-static)"
RUSTFLAGS='-C target-feature=+crt-static' nice -n 19 \
  cargo build --release --locked --target x86_64-unknown-linux-gnu -p bank-server
binary="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/bank-server"
if readelf -l "$binary" | grep -q 'Requesting program interpreter'; then
  echo "error: $binary is dynamically linked" >&2
  exit 1
fi
mkdir -p .image
install -m 0755 "$binary" .image/bank-server
strip .image/bank-server 2>/dev/null || true

# --- 3. The image ---------------------------------------------------------------------------------
step "buildah bud -t ${IMAGE} (vfs, chroot isolation)"
buildah "${STORE[@]}" bud --isolation chroot --format docker --layers=false \
  --build-arg DEBIAN_IMAGE="$BASE" --build-arg BINARY_FROM=context \
  -t "$IMAGE" -f Dockerfile .
buildah "${STORE[@]}" rmi --prune >/dev/null 2>&1 || true # the intermediate stages' images

# --- 4. Contents ----------------------------------------------------------------------------------
step "contents of ${IMAGE}"
config="$(buildah "${STORE[@]}" inspect --type image "$IMAGE")"
check() { # check DESCRIPTION JQ-EXPRESSION EXPECTED
  local got
  got="$(jq -c "$2" <<<"$config")"
  if [[ "$got" != "$3" ]]; then
    echo "error: ${1}: ${got}, expected ${3}" >&2
    exit 1
  fi
  echo "ok: ${1}: ${got}"
}
check "user" '.Docker.config.User' '"65532:65532"'
check "entrypoint" '.Docker.config.Entrypoint' '["/usr/local/bin/bank-server"]'
check "default command" '.Docker.config.Cmd' '["serve"]'
check "health check" '.Docker.config.Healthcheck.Test' '["CMD","/usr/local/bin/bank-healthcheck"]'
check "listen address" '[.Docker.config.Env[] | select(startswith("BANK_LISTEN="))]' '["BANK_LISTEN=0.0.0.0:8080"]'
container="$(buildah "${STORE[@]}" from "$IMAGE")"
cleanup_container() {
  buildah "${STORE[@]}" umount "$container" >/dev/null 2>&1 || true
  buildah "${STORE[@]}" rm "$container" >/dev/null 2>&1 || true
}
trap cleanup_container EXIT
mnt="$(buildah "${STORE[@]}" mount "$container")"
executables="$(cd "$mnt" && find . -type f -perm -u+x | sort | tr '\n' ' ')"
if [[ "$executables" != "./usr/local/bin/bank-healthcheck ./usr/local/bin/bank-server " ]]; then
  echo "error: executables in the image: ${executables} (expected only bank-server and bank-healthcheck)" >&2
  exit 1
fi
echo "ok: executables: ${executables}(no shell, no package manager, no other tools)"
for exe in usr/local/bin/bank-server usr/local/bin/bank-healthcheck; do
  if readelf -l "$mnt/$exe" | grep -q 'Requesting program interpreter'; then
    echo "error: /$exe is dynamically linked" >&2
    exit 1
  fi
done
echo "ok: both are static (no program interpreter)"
[[ -s "$mnt/etc/ssl/certs/ca-certificates.crt" ]] || { echo "error: no CA certificates" >&2; exit 1; }
echo "ok: CA certificates, $(grep -c 'BEGIN CERTIFICATE' "$mnt/etc/ssl/certs/ca-certificates.crt") roots"
grep -q '^bank:x:65532:65532:' "$mnt/etc/passwd" || { echo "error: no user 65532 in /etc/passwd" >&2; exit 1; }
echo "ok: user bank (65532) in /etc/passwd"
size_bytes="$(du -sb "$mnt" | cut -f1)"
echo "image size: $((size_bytes / 1024 / 1024)) MiB uncompressed ($(du -sh "$mnt/usr/local/bin/bank-server" | cut -f1) of it bank-server); \
in the image store $(buildah "${STORE[@]}" images --format '{{.Size}}' "$IMAGE")"

if ((RUN == 0)); then
  echo "image ${IMAGE} built and checked (not run: --no-run)"
  exit 0
fi

# --- 5. Run it ------------------------------------------------------------------------------------
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp)"
server_pid=""
podman_container=""
bound=()
stop_server() {
  [[ -n "$podman_container" ]] && podman "${STORE[@]}" rm -f "$podman_container" >/dev/null 2>&1 || true
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  for target in "${bound[@]}"; do umount "$target" 2>/dev/null || true; done
  rm -f "$log"
  cleanup_container
}
trap stop_server EXIT

run_in_image() { # the image's own files, user and environment, in a chroot of its root file system
  local -a env_args=()
  mapfile -t env_args < <(jq -r '.Docker.config.Env[]' <<<"$config")
  env -i "${env_args[@]}" BANK_LISTEN="127.0.0.1:${port}" \
    "$(command -v chroot)" --userspec=65532:65532 "$mnt" "$@"
}

exec_in_image() { # run_in_image, replacing the calling (sub)shell
  local -a env_args=()
  mapfile -t env_args < <(jq -r '.Docker.config.Env[]' <<<"$config")
  exec env -i "${env_args[@]}" BANK_LISTEN="127.0.0.1:${port}" \
    "$(command -v chroot)" --userspec=65532:65532 "$mnt" "$@"
}

mode=""
step "run: podman run --read-only ${IMAGE} serve --demo"
if podman_container="$(podman "${STORE[@]}" run -d --rm --ulimit host --read-only --tmpfs /tmp \
  --tmpfs /var/lib/bank:rw,mode=1777 --network host \
  -e BANK_LISTEN="127.0.0.1:${port}" "$IMAGE" serve --demo 2>"$log")"; then
  mode="podman"
else
  echo "this sandbox cannot run containers (podman run: $(grep -m1 '^Error' "$log" || tail -1 "$log"));" \
    "running the image's" \
    "entrypoint as its user (65532) in a chroot of the image's root file system instead"
  podman_container=""
  mkdir -p "$mnt/var/lib/bank" && chown 65532:65532 "$mnt/var/lib/bank"
  # What a container runtime provides: /dev/null, /dev/urandom, /dev/random (the server's
  # random numbers), bound from the host for the run and unmounted after it.
  mkdir -p "$mnt/dev"
  for dev in null urandom random; do
    touch "$mnt/dev/$dev"
    mount --bind "/dev/$dev" "$mnt/dev/$dev"
    bound+=("$mnt/dev/$dev")
  done
  # `exec`: the background job is then the server itself, so stop_server's kill reaches it.
  (exec_in_image /usr/local/bin/bank-server serve --demo) >"$log" 2>&1 &
  server_pid=$!
  mode="chroot"
fi
logs() {
  if [[ "$mode" == podman ]]; then podman "${STORE[@]}" logs "$podman_container" 2>&1; else cat "$log"; fi
}
for _ in $(seq 1 120); do
  curl -fsS "http://127.0.0.1:${port}/health/ready" >/dev/null 2>&1 && break
  sleep 0.5
done
if ! curl -fsS "http://127.0.0.1:${port}/health/ready"; then
  echo "error: /health/ready never answered 200; server output:" >&2
  logs | tail -40 >&2
  exit 1
fi
echo
echo "ok: /health/ready answers 200 (${mode})"
if [[ "$mode" == podman ]]; then
  podman "${STORE[@]}" healthcheck run "$podman_container" && echo "ok: the image's HEALTHCHECK passes"
else
  run_in_image /usr/local/bin/bank-healthcheck && echo "ok: the image's health probe passes"
fi
# The demo banner: "  alice@… password P role customer totp_secret S …".
banner="$(logs | grep -m1 -E '^  [^ ]+ +password [^ ]+ +role customer +totp_secret [A-Z2-7=]+')" ||
  { echo "error: no demo customer in the server's output" >&2; logs | tail -20 >&2; exit 1; }
read -r email _ password _ _ _ secret _ <<<"$banner"
if [[ "$mode" == podman ]]; then
  code="$(podman "${STORE[@]}" exec "$podman_container" /usr/local/bin/bank-server totp "$secret")"
else
  code="$(run_in_image /usr/local/bin/bank-server totp "$secret")"
fi
login="$(jq -nc --arg e "$email" --arg p "$password" --arg c "$code" '{email: $e, password: $p, totp_code: $c}')"
token="$(curl -fsS -X POST "http://127.0.0.1:${port}/v1/auth/login" -H 'content-type: application/json' -d "$login" | jq -r .access_token)"
[[ -n "$token" && "$token" != null ]] || { echo "error: login as ${email} failed" >&2; exit 1; }
accounts="$(curl -fsS "http://127.0.0.1:${port}/v1/accounts" -H "authorization: Bearer ${token}")"
echo "ok: ${email} logged in (password + TOTP) and listed $(jq 'if type == "array" then length else (.items // .accounts // []) | length end' <<<"$accounts") account(s)"
echo "image ${IMAGE}: built, checked and run (${mode})"
