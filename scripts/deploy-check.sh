#!/usr/bin/env bash
# Checks the infrastructure as code in deploy/ offline (no AWS account, no credentials):
#   1. npm ci (the pinned aws-cdk-lib and aws-cdk), tsc;
#   2. the template tests (node --test: Object Lock, MFA, encryption, alarms, least privilege, …);
#   3. cdk synth of every environment in deploy/cdk.json, lookups off (cdk.context.json pins them);
#   4. cfn-lint on the synthesized templates: no error, no warning but the two deploy/.cfnlintrc.yaml
#      justifies;
#   5. checkov on them: no finding that is not justified in the repository (deploy/.checkov.yaml,
#      and per resource in deploy/lib/policy-scan.ts).
# cfn-lint and checkov come from PyPI (versions pinned in deploy/requirements.txt) into a
# virtualenv under ~/.cache/bank-deploy-venv.
#
# A tool that cannot be had (no node >= 20 / npm, no python3 venv, no registry) skips this check
# with the reason printed; with BANK_REQUIRE_SERVICES=1 (CI) that is an error instead.
# Prints `deploy: N passed, M failed` (the template tests) as its last line.
#
# Environment:
#   BANK_DEPLOY_VENV        the virtualenv (default ~/.cache/bank-deploy-venv)
#   BANK_REQUIRE_SERVICES=1  a missing tool is an error
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../deploy"
VENV="${BANK_DEPLOY_VENV:-${HOME:-/tmp}/.cache/bank-deploy-venv}"

step() {
  printf '\n==> deploy: %s\n' "$*"
}
# A tool that cannot be had: skip (exit 0) saying why, or fail under BANK_REQUIRE_SERVICES=1.
unavailable() {
  if [[ "${BANK_REQUIRE_SERVICES:-0}" == 1 ]]; then
    echo "error: $* (BANK_REQUIRE_SERVICES=1: the deploy checks are required)" >&2
    exit 1
  fi
  echo "warning: $*; the deploy checks (deploy/) are skipped" >&2
  echo "deploy: skipped"
  exit 0
}

# --- Tools --------------------------------------------------------------------------------------
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
  unavailable "node and npm are not installed (Debian: apt-get install nodejs npm; node >= 20)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
((node_major >= 20)) || unavailable "node $(node --version) is too old (aws-cdk-lib needs node >= 20)"

step "npm ci (aws-cdk-lib, aws-cdk, typescript from package-lock.json)"
if [[ ! -x node_modules/.bin/cdk || package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error || unavailable "npm ci failed (is the npm registry reachable?)"
else
  echo "node_modules is up to date"
fi

step "cfn-lint and checkov (PyPI, deploy/requirements.txt) in ${VENV}"
# (Re)installed unless every pinned requirement is installed at its version.
installed="$("$VENV/bin/python" -m pip freeze 2>/dev/null | grep -icxF -f requirements.txt || true)"
if [[ "$installed" != "$(grep -c . requirements.txt)" ]]; then
  command -v python3 >/dev/null 2>&1 || unavailable "python3 is not installed (Debian: apt-get install python3 python3-venv)"
  python3 -m venv "$VENV" || unavailable "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt ||
    unavailable "pip install -r deploy/requirements.txt failed (is PyPI reachable?)"
fi
"$VENV/bin/cfn-lint" --version
"$VENV/bin/checkov" --version

# --- Build and template tests ---------------------------------------------------------------------
step "tsc"
rm -rf dist
npx --no-install tsc -p .

step "template tests (node --test)"
test_log="$(mktemp)"
out="$(mktemp -d)"
trap 'rm -rf "$test_log" "$out"' EXIT
tests_rc=0
node --test --test-reporter=spec dist/test/ 2>&1 | tee "$test_log" || tests_rc=$?
passed="$(grep -Eo '^ℹ pass [0-9]+' "$test_log" | grep -Eo '[0-9]+' || echo 0)"
failed="$(grep -Eo '^ℹ fail [0-9]+' "$test_log" | grep -Eo '[0-9]+' || echo 0)"

# --- Synthesis, lint, policy scan ------------------------------------------------------------------
# Offline: no credentials are looked for, no lookup is made (a missing pinned value fails), no
# notices or telemetry are fetched or sent.
export CDK_DISABLE_CLI_TELEMETRY=true AWS_EC2_METADATA_DISABLED=true BC_SKIP_MAPPING=TRUE
unset AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
environments="$(node -p 'Object.keys(require("./cdk.json").context.environments).join(" ")')"
for env in $environments; do
  step "cdk synth -c env=${env} (offline, lookups off)"
  npx --no-install cdk synth --quiet --lookups=false --no-notices --no-version-reporting \
    -c env="$env" -c imageTag=ci -o "$out/$env"
  step "cfn-lint (${env})"
  "$VENV/bin/cfn-lint" --format parseable -- "$out/$env"/*.template.json
  step "checkov (${env})"
  "$VENV/bin/checkov" --config-file .checkov.yaml -d "$out/$env"
done

step "a wrong environment name fails synthesis with a clear message"
if msg="$(npx --no-install cdk synth --quiet --lookups=false --no-notices -c env=nope -c imageTag=ci -o "$out/nope" 2>&1)"; then
  echo "error: cdk synth -c env=nope succeeded" >&2
  exit 1
fi
grep -F 'unknown environment "nope": expected one of' <<<"$msg"

if ((tests_rc != 0)); then
  echo "error: template tests failed (${failed})" >&2
  echo "deploy: ${passed} passed, ${failed} failed"
  exit 1
fi
echo "deploy: ${passed} passed, ${failed} failed"
