#!/usr/bin/env bash
# README command 2: runs every test, on a fresh machine. .ci/run calls this.
#  1. cargo test --workspace: domain units, handlers against an embedded dynoxide, concurrency,
#     failure injection, billing, template-vs-code drift.
#  2. End to end on a real local stack (dynoxide binary + seeds + cargo lambda watch + dev gateway):
#     every sample event through `cargo lambda invoke`, the billing state machine's definition in a local
#     Step Functions interpreter against billing-run, the OpenAPI contract with schemathesis, and the
#     dashboard in headless Chromium.
#  3. Infrastructure: sam validate --lint and an offline sam build of arm64 bootstraps.
# Set SKIP_SAM_BUILD=1 to skip the (slow, release) sam build locally; CI never sets it.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/install-tools.sh test
stages_passed=0
stages_failed=0
failed_names=()

run_stage() {
  local name="$1"; shift
  echo
  echo "==> $name"
  local started=$SECONDS
  if "$@"; then
    stages_passed=$((stages_passed + 1))
    echo "==> $name: ok ($((SECONDS - started))s)"
  else
    stages_failed=$((stages_failed + 1))
    failed_names+=("$name")
    echo "==> $name: FAILED ($((SECONDS - started))s)"
  fi
}

run_stage "cargo test" cargo test --workspace --no-fail-fast

# The end-to-end stack uses its own ports so it never collides with a running scripts/dev.sh.
export STACK_LOG_DIR="$(mktemp -d /tmp/overage-credits-test.XXXXXX)"
export EVENT_BUS_PORT="${TEST_EVENT_BUS_PORT:-14010}"
source scripts/local-stack.sh
trap stack_stop EXIT INT TERM
e2e_stack() {
  stack_start_dynamo "${TEST_DYNAMO_PORT:-18000}" &&
    stack_start_stripe "${TEST_STRIPE_PORT:-12112}" &&
    stack_seed &&
    stack_start_functions "${TEST_INVOKE_PORT:-19000}" --ignore-changes &&
    stack_start_gateway "${TEST_GATEWAY_PORT:-13000}" &&
    stack_start_events
}
seed_settled_statements() { SEED_SETTLED_STATEMENTS=1 stack_seed; }
if run_stage "start local stack" e2e_stack; then
  export DEV_TOKEN="$(node dev/gateway.mjs --print-token acct-northwind-coffee)"
  run_stage "cargo lambda invoke events/" scripts/invoke-events.sh "${TEST_INVOKE_PORT:-19000}"
  run_stage "billing state machine (local executions)" scripts/billing-state-machine-test.sh "${TEST_INVOKE_PORT:-19000}"
  run_stage "OpenAPI contract (schemathesis)" scripts/contract-test.sh
  # Last, because they bill a cycle and hold the declining account: a paid and a declined statement for the
  # dashboard's settlement tests, written by the seed loader as scripts/dev.sh writes them.
  run_stage "settled statements for the dashboard (seed loader)" seed_settled_statements
  run_stage "dashboard in headless Chromium" scripts/browser-test.sh
fi
stack_stop

run_stage "infrastructure (sam validate --lint, sam build)" scripts/check-infra.sh

echo
if [ "$stages_failed" -ne 0 ]; then
  echo "failed stages: ${failed_names[*]} (logs of the local stack: $STACK_LOG_DIR)"
fi
echo "stages: $stages_passed passed, $stages_failed failed"
[ "$stages_failed" -eq 0 ]
