#!/usr/bin/env bash
# Walks a low-balance alert and an auto top-up end to end on the local stack, asserting every step
# (docs/consumption.md, "Walk it yourself"): a fresh account of agency-northwind with a 10000.00 line buys 100 audience
# credits; through the API (the dev gateway, as the panel does) it sets an alert at 50 and a top-up rule
# {below 20, buy 100}; then `cargo lambda invoke consume-credits`:
#   - 60 credits: 100 -> 40 crosses 50: `credits.low` reaches the bus, no top-up;
#   - 25 credits: 40 -> 15 would be below 20: the same transaction buys 100 (`auto_topup.succeeded`, a
#     `credits.purchased` with trigger `auto_topup`), the balance is 115, the ledger shows the purchase labelled
#     `auto_topup`, and no second `credits.low` (the balance was already below 50);
#   - 30 more: 115 -> 85, nothing (above both).
# The events are read from $EVENTS_LOG, where the stand-in bus of dev/event-pipeline.mjs appends what the real
# publish-events put on it after the table's stream carried the outbox items there.
# Its own account, named per run (WALKTHROUGH_ID), so it can run again on the same stack.
#
# Usage: scripts/consumption-walkthrough.sh [INVOKE_PORT]
# Needs the local stack's environment (LAMBDA_INVOKE_URL's port, GATEWAY_URL, EVENTS_LOG): scripts/test.sh runs it
# inside scripts/invoke-events.sh; with scripts/dev.sh up, run it in another terminal (it defaults to the dev stack's
# ports and .local/logs) and watch the events print in dev.sh's terminal.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${1:-${INVOKE_PORT:-9000}}"
: "${GATEWAY_URL:=http://127.0.0.1:${GATEWAY_PORT:-3000}}"
: "${EVENTS_LOG:=.local/logs/events.jsonl}"
export EVENTS_LOG

run_id="${WALKTHROUGH_ID:-$(date -u +%H%M%S)$RANDOM}"
account="acct-walk-topup-$run_id"
source scripts/walkthrough-lib.sh

# api METHOD PATH [BODY]: the API through the dev gateway with this account's dev token; prints
# {"statusCode", "body"} as a function would answer.
api() {
  local method="$1" path="$2" body="${3:-}" token out code
  token="$(node dev/gateway.mjs --print-token "$account")"
  out="$(mktemp)"
  code="$(curl -sS -o "$out" -w '%{http_code}' -X "$method" -H "Authorization: Bearer $token" \
    ${body:+-H 'Content-Type: application/json' --data "$body"} "$GATEWAY_URL$path")"
  python3 -c 'import json,sys; print(json.dumps({"statusCode": int(sys.argv[1]), "body": open(sys.argv[2]).read()}))' "$code" "$out"
  rm -f "$out"
}

# events TYPE: this account's events of TYPE the bus received after this run started (JSON lines).
events_start="$(wc -l <"$EVENTS_LOG" 2>/dev/null || echo 0)"
events_of() { scripts/wait-for-event.sh "$1" "$account" "${2:-20}" "$events_start" 2>/dev/null || true; }
count_events() { events_of "$1" "${2:-1}" | grep -c . || true; }

consume() {
  local id="$1" quantity="$2"
  invoke consume-credits "{\"accountId\": \"$account\", \"consumptionId\": \"walk-$run_id-$id\",
    \"quantities\": {\"audience\": $quantity}, \"reason\": \"walkthrough\"}"
}

step "run $run_id: account $account of agency-northwind"
provision_with_line "$account" agency-northwind 10000.00
output="$(invoke purchase-credits "$(api_event purchase-credits "$account" '{"quantities": {"audience": 100}}')")"
check "purchase-credits 100 audience -> 201" "$output" 'r["statusCode"] == 201'

output="$(api PUT "/accounts/$account/alerts" '{"thresholds": {"audience": 50}}')"
check "PUT /accounts/$account/alerts {audience: 50} -> 200" "$output" \
  'r["statusCode"] == 200 and body["thresholds"] == {"audience": 50}'
output="$(api PUT "/accounts/$account/topups" '{"rules": {"audience": {"below": 20, "buy": 100}}}')"
check "PUT /accounts/$account/topups {audience: below 20, buy 100} -> 200" "$output" \
  'r["statusCode"] == 200 and body["rules"] == {"audience": {"below": 20, "buy": 100}}'

output="$(consume 1 60)"
check "consume-credits 60 audience (100 -> 40) -> consumed, alert on audience" "$output" \
  'r["result"] == "consumed" and r["alerts"] == ["audience"] and "topup" not in r'
low="$(events_of credits.low)"
[ "$(printf '%s' "$low" | grep -c .)" = 1 ] || fail "want one credits.low after crossing 50, got: $low"
check "bus: credits.low (threshold 50, balance 40)" "$low" \
  'body["detail"]["creditType"] == "audience" and body["detail"]["threshold"] == 50 and body["detail"]["balance"] == 40'

output="$(consume 2 25)"
check "consume-credits 25 audience (40 -> 15 < 20) -> consumed with a top-up of 100" "$output" \
  'r["result"] == "consumed" and r["topup"]["lines"][0]["quantity"] == 100 and not r.get("alerts")'
topup="$(events_of auto_topup.succeeded)"
check "bus: auto_topup.succeeded (100 audience)" "$topup" \
  'body["detail"]["creditType"] == "audience" and body["detail"]["quantity"] == 100'
purchase_id="$(printf '%s' "$topup" | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["detail"]["purchaseId"])')"
bought="$(events_of credits.purchased | grep "$purchase_id" || true)"
check "bus: credits.purchased $purchase_id with trigger auto_topup" "${bought:-null}" \
  'body is not None and body["detail"]["trigger"] == "auto_topup"'
output="$(invoke get-balances "$(api_event get-balances "$account")")"
check "get-balances: audience 115 (100 - 60 - 25 + 100)" "$output" \
  'r["statusCode"] == 200 and body["balances"]["audience"] == 115'
output="$(invoke list-purchases "$(api_event list-ledger "$account")")"
check "ledger: the top-up purchase labelled auto_topup" "$output" \
  "r['statusCode'] == 200 and any(e.get('purchaseId') == '$purchase_id' and e.get('trigger') == 'auto_topup' for e in body['entries'])"

output="$(consume 3 30)"
check "consume-credits 30 audience (115 -> 85) -> consumed" "$output" 'r["result"] == "consumed"'
sleep 2 # whatever the last consumption emitted has reached the bus by now
[ "$(count_events credits.low)" = 1 ] || fail "a second credits.low: $(events_of credits.low)"
[ "$(count_events auto_topup.succeeded)" = 1 ] || fail "a second top-up: $(events_of auto_topup.succeeded)"
steps=$((steps + 1)); step "ok   bus: still one credits.low and one auto_topup.succeeded; 3 credits.consumed"
[ "$(count_events credits.consumed)" = 3 ] || fail "want 3 credits.consumed: $(events_of credits.consumed)"
step "passed: $steps checks"
