#!/usr/bin/env bash
# Fuzzes the API against the committed OpenAPI document (openapi/openapi.json) with schemathesis,
# every check, on a release server: starts `serve --demo` on a loopback port with a throw-away
# data directory and rate limits raised, signs in alice (customer routes, her transfers pointed at
# her own accounts by scripts/schemathesis_hooks.py) and the operator (admin routes), runs both,
# and stops the server it started. 0 server errors, 0 schema violations and 0
# undocumented status codes, or it fails.
#
#   ./scripts/schemathesis.sh [max-examples per operation, default 100]
#
# schemathesis comes from PyPI, installed into a virtualenv under ~/.cache (BANK_ST_VENV) when
# missing; SCHEMATHESIS=path uses another one. When it cannot be installed (no python3 venv, no
# PyPI) the run is skipped with the reason — and fails under BANK_REQUIRE_SERVICES=1 (CI).
# BANK_ST_PROFILE=debug tests a debug server instead (faster to build, for local loops).
#
# Checks configured in schemathesis.toml (the workspace root), each with its reason.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/tmp}/.cache/bank-target}"
examples="${1:-100}"
port="${BANK_ST_PORT:-18919}"
base="http://127.0.0.1:${port}"
profile="${BANK_ST_PROFILE:-release}"
venv="${BANK_ST_VENV:-${HOME:-/tmp}/.cache/bank-schemathesis-venv}"
schemathesis_version="${BANK_ST_VERSION:-4.32.5}"

skip_or_fail() {
  if [[ "${BANK_REQUIRE_SERVICES:-0}" == 1 ]]; then
    echo "error: $1 (BANK_REQUIRE_SERVICES=1)" >&2
    exit 1
  fi
  echo "schemathesis skipped: $1" >&2
  exit 0
}

st="${SCHEMATHESIS:-}"
if [[ -z "${st}" ]]; then
  st="${venv}/bin/schemathesis"
  if [[ ! -x "${st}" ]]; then
    echo "installing schemathesis ${schemathesis_version} into ${venv}" >&2
    python3 -m venv "${venv}" >&2 || skip_or_fail "cannot make a Python virtualenv at ${venv}"
    "${venv}/bin/pip" install -q "schemathesis==${schemathesis_version}" >&2 ||
      { rm -rf "${venv}"; skip_or_fail "cannot install schemathesis from PyPI"; }
  fi
fi

if [[ "${profile}" == release ]]; then
  cargo build -q --release -p bank-server
else
  cargo build -q -p bank-server
fi
binary="${CARGO_TARGET_DIR}/${profile}/bank-server"
work="$(mktemp -d)"
BANK_DATA_DIR="${work}/data" BANK_LISTEN="127.0.0.1:${port}" BANK_PUBLIC_URL="${base}" \
  BANK_RATE_PER_IP=100000 BANK_RATE_PER_SUBJECT=100000 BANK_LOGIN_RATE_PER_IP=100000 BANK_LOG=warn \
  "${binary}" serve --demo >"${work}/server.log" 2>&1 &
server=$!
trap 'kill "${server}" 2>/dev/null || true; wait "${server}" 2>/dev/null || true; rm -rf "${work}"' EXIT
for _ in $(seq 100); do grep -q "listening on" "${work}/server.log" && break; sleep 0.2; done
grep -q "listening on" "${work}/server.log" || { cat "${work}/server.log" >&2; echo "the server did not start" >&2; exit 1; }

# Prints a field of the JSON on stdin, e.g. `json_field '["id"]'`.
json_field() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

login() {
  local email="$1" password="$2" secret
  secret="$(grep "^  ${email}" "${work}/server.log" | sed 's/.*totp_secret \([A-Z2-7]*\).*/\1/')"
  curl -sf -X POST "${base}/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"${email}\",\"password\":\"${password}\",\"totp_code\":\"$("${binary}" totp "${secret}")\"}" |
    json_field '["access_token"]'
}
customer="$(login alice@demo.bank alice-demo-password)"
sleep 1 # the next TOTP claim must not reuse alice's step on a shared secret store
operator="$(login operator@demo.bank operator-demo-password)"

# The customer's transfers go between two of alice's accounts (the demo's and one opened here),
# so they reach the money rules (scripts/schemathesis_hooks.py).
customer_auth=(-H "Authorization: Bearer ${customer}" -H 'content-type: application/json')
BANK_ST_FROM_ACCOUNT="$(curl -sf "${base}/v1/accounts" "${customer_auth[@]}" | json_field '["items"][0]["id"]')"
BANK_ST_TO_ACCOUNT="$(curl -sf -X POST "${base}/v1/accounts" "${customer_auth[@]}" \
  -d '{"currency":"USD","name":"fuzzed transfers"}' | json_field '["id"]')"
export BANK_ST_FROM_ACCOUNT BANK_ST_TO_ACCOUNT

status=0
cd "${work}" # schemathesis keeps its replay cache in the working directory
common=(--url "${base}" --checks all --workers 1
  --max-examples "${examples}" --seed "${BANK_ST_SEED:-1}")
PYTHONPATH="${root}/scripts" SCHEMATHESIS_HOOKS=schemathesis_hooks \
  "${st}" --config-file "${root}/schemathesis.toml" run "${root}/openapi/openapi.json" "${common[@]}" -H "Authorization: Bearer ${customer}" \
  --exclude-path-regex '^/v1/admin' || status=1
"${st}" --config-file "${root}/schemathesis.toml" run "${root}/openapi/openapi.json" "${common[@]}" -H "Authorization: Bearer ${operator}" \
  --include-path-regex '^/v1/admin' || status=1
if grep -q "panicked" "${work}/server.log"; then
  echo "the server panicked during the run:" >&2
  grep -A3 "panicked" "${work}/server.log" >&2
  status=1
fi
exit "${status}"
