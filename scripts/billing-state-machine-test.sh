#!/usr/bin/env bash
# The billing state machine end to end on a running local stack (scripts/test.sh runs it after the sample
# events): the REAL definition, infra/billing-state-machine.asl.json, in an Amazon States Language interpreter
# (scripts/billing-state-machine.mjs), its Tasks invoking billing-run under `cargo lambda watch`.
#  1. the interpreter's unit tests against a fake billing-run (hand-overs, retries, failures, sides apart);
#  2. purchases for three accounts of three agencies, then an execution for a cycle ending now: it must succeed,
#     the part runs must have billed every purchase on both sides (the final run finding nothing left) and the
#     final run made the statements payable;
#  3. a second execution for the same cycle: succeeds and bills nothing (exactly once).
# Usage: scripts/billing-state-machine-test.sh [INVOKE_PORT]   (LAMBDA_INVOKE_URL wins if set)
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-9000}"
export LAMBDA_INVOKE_URL="${LAMBDA_INVOKE_URL:-http://[::1]:$port}"
report_dir="${STACK_LOG_DIR:-$(mktemp -d)}"

# The interpreter (npm aws-local-stepfunctions, pinned in tools/state-machine/package-lock.json), once.
want=$(node -p "require('./tools/state-machine/package-lock.json').packages['node_modules/aws-local-stepfunctions'].version")
have=$(node -p "try { require('./tools/state-machine/node_modules/aws-local-stepfunctions/package.json').version } catch { '' }")
if [[ $want != "$have" ]]; then
  echo "billing-state-machine-test: npm ci (aws-local-stepfunctions $want)" >&2
  npm ci --prefix tools/state-machine --no-audit --no-fund --loglevel=error
fi

node scripts/billing-state-machine.mjs --validate
node --test tools/state-machine/tests/

# Purchases, each a new one (no Idempotency-Key), for accounts of three agencies (never acct-northwind-coffee,
# whose line and statements the browser tests read).
accounts=(acct-northwind-bikes acct-brightside-dental acct-plainsail-bakery)
per_account=2
for account in "${accounts[@]}"; do
  for ((i = 0; i < per_account; i++)); do
    event=$(python3 - "$account" <<'EOF'
import json, sys
event = json.load(open("events/purchase-credits.json"))
account = sys.argv[1]
event["rawPath"] = event["requestContext"]["http"]["path"] = f"/accounts/{account}/credit-purchases"
event["pathParameters"]["accountId"] = account
event["requestContext"]["authorizer"]["jwt"]["claims"]["custom:account_id"] = account
event["requestContext"]["requestId"] = f"billing-state-machine-{account}"
event["body"] = json.dumps({"quantities": {"audience": 1}})
print(json.dumps(event))
EOF
)
    status=$(cargo lambda invoke purchase-credits -P "$port" --data-ascii "$event" 2>&1 |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["statusCode"])' 2>/dev/null || echo "no-response")
    [[ $status == 201 ]] || { echo "FAIL purchase for $account -> $status (want 201)"; exit 1; }
  done
done
purchases=$((${#accounts[@]} * per_account))
sleep 1 # the cycle end below is a whole second, after the purchases' createdAt
cycle_end="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
# Not a cycle boundary: an off-cycle run, billed once billing-run's 60 s grace period has passed (the
# definition's Grace state waits 2 minutes more).
sleep 61
echo "ok   $purchases purchases for ${accounts[*]}; billing the cycle ending $cycle_end"

failed=0
run() { # run NAME: one execution for the cycle, its report in $report_dir/billing-state-machine-NAME.json
  local file="$report_dir/billing-state-machine-$1.json"
  node scripts/billing-state-machine.mjs "{\"cycleEnd\": \"$cycle_end\", \"offCycle\": true}" >"$file" || true
  echo "$file"
}
check() { # check FILE PYTHON-ASSERTIONS: the assertions see the report as `r`
  python3 - "$1" "$2" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
def fail(why):
    print(f"FAIL {why}\n     report: {sys.argv[1]}: {json.dumps({k: r.get(k) for k in ('status', 'error', 'cause')})}")
    sys.exit(1)
try:
    exec(sys.argv[2])
except AssertionError as e:
    fail(e)
EOF
}

first=$(run first)
check "$first" "
assert r['status'] == 'SUCCEEDED', 'the execution did not succeed'
out = r['output']
client = sum(p['purchasesBilled'] for p in out['client'])
agency = sum(p['purchasesBilled'] for p in out['agency'])
final = out['finish']['last']
parts = len(out['client'])
assert [p['part'] for p in out['client']] == [{'index': k, 'of': parts} for k in range(parts)], 'client parts'
assert [p['part'] for p in out['agency']] == [{'index': k, 'of': parts} for k in range(parts)], 'agency parts'
assert client >= $purchases and agency >= $purchases, f'the part runs billed {client} client / {agency} agency purchases, want >= $purchases each'
assert final['purchasesBilledToClient'] == 0 and final['purchasesBilledToAgency'] == 0, 'the final run found purchases the parts left'
assert final['complete'] is True and final['statementsMadePayable'] >= ${#accounts[@]}, f\"statements made payable: {final['statementsMadePayable']}\"
assert r['taskInvocationCount'] >= 2 * parts + 1
print(f\"ok   first execution: SUCCEEDED in {r['durationMs']} ms, {r['taskInvocationCount']} billing-run invocations \"
      f'({parts} client parts, {parts} agency parts, {out[\"finish\"][\"invocations\"]} final); billed {client} client and '
      f\"{agency} agency purchase-sides in the parts, {final['statementsMadePayable']} statements made payable\")
" || failed=1

second=$(run second)
check "$second" "
assert r['status'] == 'SUCCEEDED', 'the second execution did not succeed'
out = r['output']
billed = sum(p['purchasesBilled'] for side in ('client', 'agency') for p in out[side])
final = out['finish']['last']
assert billed == 0 and final['purchasesBilledToClient'] == 0 and final['purchasesBilledToAgency'] == 0, f'the second execution billed {billed} again'
assert final['statementsMadePayable'] == 0, 'the second execution made statements payable again'
print(f\"ok   second execution of the same cycle: SUCCEEDED in {r['durationMs']} ms, {r['taskInvocationCount']} invocations, billed nothing (exactly once)\")
" || failed=1

[[ $failed == 0 ]] && echo "billing-state-machine-test: passed" || echo "billing-state-machine-test: FAILED (reports in $report_dir)"
exit "$failed"
