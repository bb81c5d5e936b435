#!/usr/bin/env bash
# The one command that runs every check of the workspace:
#   formatting, clippy (warnings are errors), every test (cargo-nextest when installed, else
#   cargo test; bank-load's kill -9 fault test among them), doctests, the JS client (bank-wasm:
#   built, type-checked, tested on Node and in headless Chromium), schemathesis against a release
#   server, the deploy/ checks, one pass of every benchmark, the quickstart and statement_sample
#   examples.
#
# Environment:
#   CARGO_TARGET_DIR       build folder (default: $HOME/.cache/bank-target, shared between checkouts)
#   BANK_SKIP_LINT=1       skip fmt and clippy, for fast local loops (CI never sets it)
#   BANK_REQUIRE_SERVICES=1  a test service (PostgreSQL, see scripts/services.sh) that cannot be
#                          started is an error instead of a skip (CI sets it)
#   BANK_SERVICES_DIR      state folder of scripts/services.sh (default: a new one in ${TMPDIR:-/tmp})
#   BANK_SKIP_DEPLOY=1     skip the infrastructure checks of deploy/ (scripts/deploy-check.sh)
# The container image is not built here (a debootstrap and a release build take long): run
# scripts/build-image.sh for it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/tmp}/.cache/bank-target}"

step() {
  printf '\n==> %s\n' "$*"
}

# --- Services ------------------------------------------------------------------------------------
# The PostgreSQL adapters' tests need real servers on loopback. scripts/services.sh starts what is
# missing: PostgreSQL on 127.0.0.1:5432 (installed and started when absent) with a fresh database,
# and a primary plus streaming standby (scripts/pg-pair.sh) on two free ports. It prints the
# variables the tests read, evaluated here so cargo sees them: BANK_TEST_DATABASE_URL,
# BANK_TEST_PRIMARY_URL, BANK_TEST_STANDBY_URL, BANK_TEST_PG_BINDIR and BANK_PG_PAIR_SCRIPT (a
# failover test starts its own pair with it), and BANK_SERVICES_STATE. A service it cannot provide
# is left out with a warning and its tests skip; under BANK_REQUIRE_SERVICES=1 that stops the run.
# The trap below stops what it started (the database is dropped, the pair removed, PostgreSQL
# stopped only if it was not running before).
# Redis and the moto server (DynamoDB, SQS, SNS, S3) will be started by services.sh too (later issue).
start_services() {
  # The state folder is chosen here, so the trap can clean up even after a failed start.
  BANK_SERVICES_DIR="${BANK_SERVICES_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/bank-services.XXXXXX")}"
  export BANK_SERVICES_DIR
  step "services (scripts/services.sh start, state in ${BANK_SERVICES_DIR})"
  local exports rc=0
  exports="$(bash ./scripts/services.sh start)" || rc=$?
  eval "$exports"
  if ((rc != 0)); then
    echo "scripts/services.sh start failed (exit ${rc}); see above" >&2
    exit "$rc"
  fi
}
stop_services() {
  if [[ -n "${BANK_SERVICES_DIR:-}" ]]; then
    bash ./scripts/services.sh stop "$BANK_SERVICES_DIR" ||
      echo "warning: scripts/services.sh stop failed; state kept in ${BANK_SERVICES_DIR}" >&2
  fi
}
trap stop_services EXIT
start_services
# Command-line tools some tests call (pdftotext for the statements' PDFs), installed when missing.
step "tools (scripts/tools.sh)"
bash ./scripts/tools.sh

# --- Infrastructure as code ----------------------------------------------------------------------
# deploy/ (AWS CDK): template tests, offline cdk synth of every environment, cfn-lint, checkov.
# Skips saying why when node or the Python tools cannot be had; an error under
# BANK_REQUIRE_SERVICES=1. About a minute.
deploy_passed=0
deploy_failed=0
if [[ "${BANK_SKIP_DEPLOY:-0}" == 1 ]]; then
  step "deploy checks skipped (BANK_SKIP_DEPLOY=1)"
else
  step "deploy checks (scripts/deploy-check.sh)"
  deploy_log="$(mktemp)"
  bash ./scripts/deploy-check.sh 2>&1 | tee "$deploy_log"
  deploy_passed=$(grep -Eo '^deploy: [0-9]+ passed' "$deploy_log" | grep -Eo '[0-9]+' || echo 0)
  deploy_failed=$(grep -Eo '^deploy: [0-9]+ passed, [0-9]+ failed' "$deploy_log" | grep -Eo '[0-9]+ failed' | grep -Eo '[0-9]+' || echo 0)
  rm -f "$deploy_log"
fi

# --- Lint ----------------------------------------------------------------------------------------
if [[ "${BANK_SKIP_LINT:-0}" == 1 ]]; then
  step "fmt and clippy skipped (BANK_SKIP_LINT=1)"
else
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy (warnings are errors)"
  cargo clippy --workspace --all-targets --all-features -- -D warnings
fi

# --- Tests ---------------------------------------------------------------------------------------
summary_log="$(mktemp)"
if cargo nextest --version >/dev/null 2>&1; then
  # nextest does not run doctests: run them first, so the last runner summary is the main one.
  step "doctests"
  cargo test --workspace --doc --all-features
  step "tests (cargo nextest)"
  cargo nextest run --workspace --all-features --no-fail-fast 2>&1 | tee "$summary_log"
  passed=$(grep -Eo '[0-9]+ passed' "$summary_log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
  failed=$(grep -Eo '[0-9]+ failed' "$summary_log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
else
  # Plain cargo test runs the doctests too.
  step "tests (cargo test; install cargo-nextest for a faster run and one summary)"
  cargo test --workspace --all-features --no-fail-fast 2>&1 | tee "$summary_log"
  passed=$(grep -Eo '[0-9]+ passed' "$summary_log" | awk '{s += $1} END {print s + 0}')
  failed=$(grep -Eo '[0-9]+ failed' "$summary_log" | awk '{s += $1} END {print s + 0}')
fi

# --- Fault simulation, wide -----------------------------------------------------------------------
# The test run above replays the first 2,000 seeds (in-memory), 100 (SQLite) and 40 (PostgreSQL) in
# debug. Here, in release: 100,000 fixed in-memory seeds, 100,000 more from a start derived from the
# commit (so every commit searches fresh ground; the start is printed, a failure names its seed and
# `SIM_SEED=k` replays it), 100,000 seeds of the deposit simulation, 2,000 seeds on the SQLite
# stores, and 400 on the PostgreSQL ledger and transfer store with their connections terminated
# during the chaos.
step "fault simulation in release (in-memory: 100,000 fixed + 100,000 fresh seeds, deposits 100,000; SQLite: 2,000; PostgreSQL: 400)"
commit="$(git rev-parse --short=8 HEAD 2>/dev/null || date +%s)"
fresh_from=$(( (16#${commit:0:8} % 1000000) * 100000 + 1000000 ))
echo "fresh seeds from SIM_FROM=${fresh_from} (commit ${commit})"
SIM_FROM=0 SIM_SEEDS="${SIM_FIXED_SEEDS:-100000}" \
  cargo test --release -p bank-core --all-features --test core -- simulation::pipeline_invariants_hold_under_random_faults --exact --nocapture 2>&1 | tee -a "$summary_log.sim"
SIM_FROM="${fresh_from}" SIM_SEEDS="${SIM_FRESH_SEEDS:-100000}" \
  cargo test --release -p bank-core --all-features --test core -- simulation::pipeline_invariants_hold_under_random_faults --exact --nocapture 2>&1 | tee -a "$summary_log.sim"
SIM_FROM=0 SIM_SEEDS="${SIM_DEPOSIT_SEEDS:-100000}" \
  cargo test --release -p bank-core --all-features --test core -- simulation::deposit_invariants_hold_under_random_faults --exact --nocapture 2>&1 | tee -a "$summary_log.sim"
SIM_SEEDS="${SIM_SQLITE_SEEDS:-2000}" \
  cargo test --release -p bank-local --test local -- simulation::pipeline_invariants_hold_under_random_faults_on_sqlite --exact --nocapture 2>&1 | tee -a "$summary_log.sim"
SIM_SEEDS="${SIM_POSTGRES_SEEDS:-400}" \
  cargo test --release -p bank-aws --test postgres -- simulation::pipeline_invariants_hold_under_random_faults_on_postgres --exact --nocapture 2>&1 | tee -a "$summary_log.sim"
sim_passed=$(grep -Ec '^test .* ok$' "$summary_log.sim" || true)
sim_failed=$(grep -Ec '^test .* FAILED$' "$summary_log.sim" || true)
rm -f "$summary_log.sim"
passed=$((passed + sim_passed + deploy_passed))
failed=$((failed + sim_failed + deploy_failed))

# --- The JS client (bank-wasm) ----------------------------------------------------------------------
# scripts/build-wasm.sh builds bank-wasm/pkg (installing Debian's rustc-web, rust-web-src and lld-19
# and the wasm-bindgen CLI when missing); then, against a release `bank-server serve --demo` each:
# the TypeScript example type-checked (tsc --noEmit --strict), `npm pack` of the package, the Node
# test of the nodejs build and the browser test of the web app (playwright-core driving Debian's
# chromium, from scripts/tools.sh). Without the toolchain, node/npm or chromium they skip, saying
# why; under BANK_REQUIRE_SERVICES=1 they fail instead.
js_skip() {
  if [[ "${BANK_REQUIRE_SERVICES:-0}" == 1 ]]; then
    echo "error: $* (BANK_REQUIRE_SERVICES=1)" >&2
    exit 1
  fi
  echo "skipped: $*" >&2
}
step "bank-wasm: scripts/build-wasm.sh"
wasm_rc=0
bash ./scripts/build-wasm.sh || wasm_rc=$?
if ((wasm_rc == 2)); then
  js_skip "the bank-wasm tests: no wasm32 toolchain (see above)"
elif ((wasm_rc != 0)); then
  echo "scripts/build-wasm.sh failed (exit ${wasm_rc})" >&2
  exit "$wasm_rc"
elif ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  js_skip "the bank-wasm tests: node and npm are not installed"
else
  step "bank-wasm: npm ci, tsc --noEmit --strict, npm pack"
  (cd bank-wasm/tests && npm ci --no-audit --no-fund)
  (cd bank-wasm/tests && npx --no-install tsc -p tsconfig.json)
  (cd bank-wasm/pkg && npm pack --dry-run >/dev/null)
  step "bank-wasm: node --test (the nodejs build, and the web app in headless Chromium) against a release server"
  cargo build --release -p bank-server --bin bank-server
  js_log="$(mktemp)"
  BANK_SERVER_BIN="${CARGO_TARGET_DIR}/release/bank-server" \
    node --test bank-wasm/tests/node.test.mjs bank-wasm/tests/browser.test.mjs 2>&1 | tee "$js_log"
  js_passed=$(grep -Eo '^# pass [0-9]+' "$js_log" | grep -Eo '[0-9]+' || echo 0)
  js_failed=$(grep -Eo '^# fail [0-9]+' "$js_log" | grep -Eo '[0-9]+' || echo 0)
  rm -f "$js_log"
  passed=$((passed + js_passed))
  failed=$((failed + js_failed))
  ((js_failed == 0)) || { echo "bank-wasm: ${js_failed} JS test(s) failed" >&2; exit 1; }
fi

# --- API fuzzing ---------------------------------------------------------------------------------
# schemathesis (PyPI, in a virtualenv under ~/.cache, installed when missing) against a release
# `serve --demo` and the committed openapi/openapi.json: every check, customer and operator
# tokens, a bounded number of examples per operation. Skipped with the reason when it cannot be
# installed; under BANK_REQUIRE_SERVICES=1 that fails.
step "schemathesis (scripts/schemathesis.sh, ${BANK_ST_EXAMPLES:-20} examples per operation, release server)"
bash ./scripts/schemathesis.sh "${BANK_ST_EXAMPLES:-20}"

# --- Benchmarks and examples still run -------------------------------------------------------------
# Every bench target (benches/*.rs), each benchmark run once without measuring.
step "benchmarks, one pass each (cargo bench --benches -- --test)"
cargo bench --benches -- --test

step "cargo run --example quickstart"
cargo run --example quickstart

step "cargo run --example statement_sample (a multi-page statement; its text read back)"
sample_pdf="$(mktemp --suffix=.pdf)"
cargo run --example statement_sample -- "$sample_pdf"
if command -v pdftotext >/dev/null 2>&1; then
  # Read the whole text first: `grep -q` stops reading early, and under pipefail the SIGPIPE
  # pdftotext then gets would fail the check.
  sample_text="$(pdftotext "$sample_pdf" -)"
  grep -q "Closing balance" <<<"$sample_text" || { echo "the sample statement has no closing balance" >&2; exit 1; }
fi
rm -f "$sample_pdf"

rm -f "$summary_log"
step "all checks passed in ${SECONDS}s"
# The plain closing line CI reads.
echo "tests: ${passed} passed, ${failed} failed"
