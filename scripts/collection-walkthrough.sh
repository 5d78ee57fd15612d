#!/usr/bin/env bash
# Walks Stripe collection end to end on the local stack with `cargo lambda invoke`, asserting every step
# (docs/billing-and-payments.md, "Walk it yourself"):
#  - a good card: provision an account (provision-account) with a localstripe customer paying with 4242 4242 4242
#    4242, set its credit limit (agency-write), buy (purchase-credits), bill (billing-run), collect
#    (collect-payments): the statement is `paid` (list-statements), nothing outstanding, no hold;
#  - a declining card (4000 0000 0000 0341, attaches then declines): the same purchase and billing, collect:
#    `payment_failed`, the account on hold (get-balances), a purchase answers 402 `account_on_hold`; then a good
#    card becomes the customer's default in localstripe, the retry date is moved into the past (collect-payments
#    takes no clock: the dunning retry is due 3 days after the failure, so the script does what waiting would) and
#    collect runs again: `paid`, hold lifted, a purchase answers 201; localstripe holds exactly one PaymentIntent
#    per attempt (1 for the good card, 2 for the declining one).
# Its own accounts and customers, named per run (WALKTHROUGH_ID), so it depends on no seeded account's state and
# can run again on the same stack.
#
# Usage: scripts/collection-walkthrough.sh [all|prepare|finish CYCLE_END] [INVOKE_PORT]
#   all (default): prepare, wait out billing's 60 s grace, bill a cycle ending now (off-cycle), finish.
#   prepare / finish: the two halves, for scripts/invoke-events.sh, which bills in between (its own billing run
#   covers these purchases, so the walk adds no second 60 s wait to scripts/test.sh).
# Needs the local stack's environment (STRIPE_API_BASE, AWS_ENDPOINT_URL_DYNAMODB, TABLE_NAME): run it with
# scripts/dev.sh up (after `source scripts/local-stack.sh` in that shell is not needed: it defaults to the dev
# stack's ports) or with WALKTHROUGH_START_STACK=1, which starts a stack of its own on the TEST_* ports and
# stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-all}"
case "$mode" in
  all | prepare) port="${2:-${INVOKE_PORT:-9000}}" ;;
  finish) cycle_end="${2:?finish needs the cycle end billed}"; port="${3:-${INVOKE_PORT:-9000}}" ;;
  *) echo "usage: $0 [all|prepare|finish CYCLE_END] [INVOKE_PORT]" >&2; exit 2 ;;
esac

if [ "${WALKTHROUGH_START_STACK:-0}" = 1 ]; then
  source scripts/install-tools.sh >/dev/null
  export STACK_LOG_DIR="${STACK_LOG_DIR:-$(mktemp -d /tmp/overage-credits-walk.XXXXXX)}"
  source scripts/local-stack.sh
  trap stack_stop EXIT INT TERM
  port="${TEST_INVOKE_PORT:-19000}"
  stack_start_dynamo "${TEST_DYNAMO_PORT:-18000}"
  stack_start_stripe "${TEST_STRIPE_PORT:-12112}"
  stack_seed
  stack_start_functions "$port" --ignore-changes
  stack_start_gateway "${TEST_GATEWAY_PORT:-13000}"
fi
: "${STRIPE_API_BASE:=http://127.0.0.1:${STRIPE_PORT:-12111}}"
: "${AWS_ENDPOINT_URL_DYNAMODB:=http://127.0.0.1:${DYNAMO_PORT:-8000}}"
: "${TABLE_NAME:=overage-credits}"
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"

run_id="${WALKTHROUGH_ID:-$(date -u +%H%M%S)$RANDOM}"
agency="agency-northwind"
good="acct-walk-paid-$run_id"
declining="acct-walk-declined-$run_id"
state_file="${TMPDIR:-/tmp}/collection-walkthrough-$run_id.env"
source scripts/walkthrough-lib.sh

# stripe METHOD PATH [FORM ...]: localstripe's answer (JSON).
stripe() {
  local method="$1" path="$2"; shift 2
  local form=()
  for field in "$@"; do form+=(--data-urlencode "$field"); done
  curl -fsS -X "$method" -u sk_test_local: "$STRIPE_API_BASE$path" "${form[@]}"
}
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# A customer whose default payment method is the card (a PaymentMethod id, or a card number made into one).
customer_with_card() {
  local name="$1" card="$2" customer method
  customer="$(stripe POST /v1/customers "name=$name" | json_field '["id"]')"
  if [[ "$card" =~ ^[0-9]+$ ]]; then
    card="$(stripe POST /v1/payment_methods type=card "card[number]=$card" 'card[exp_month]=12' \
      'card[exp_year]=2034' 'card[cvc]=123' | json_field '["id"]')"
  fi
  method="$(stripe POST "/v1/payment_methods/$card/attach" "customer=$customer" | json_field '["id"]')"
  stripe POST "/v1/customers/$customer" "invoice_settings[default_payment_method]=$method" >/dev/null
  printf '%s' "$customer"
}

prepare() {
  step "run $run_id: accounts $good and $declining under $agency"
  local good_customer declining_customer
  good_customer="$(customer_with_card "$good" 4242424242424242)"
  declining_customer="$(customer_with_card "$declining" 4000000000000341)"
  printf 'good_customer=%s\ndeclining_customer=%s\n' "$good_customer" "$declining_customer" >"$state_file"
  step "localstripe customers: $good_customer (4242...), $declining_customer (4000 0000 0000 0341, declines)"
  for pair in "$good:$good_customer" "$declining:$declining_customer"; do
    local account="${pair%%:*}" customer="${pair#*:}" output
    provision_with_line "$account" "$agency" 1000.00 "$customer"
    output="$(invoke purchase-credits "$(api_event purchase-credits "$account" '{"quantities": {"pixel": 2}}')")"
    check "purchase-credits $account -> 201" "$output" 'r["statusCode"] == 201'
  done
}

# statement_check ACCOUNT WHAT PYTHON_EXPR: the account's statement of this cycle, as list-statements shows it
# (`s`), must satisfy the expression.
statement_check() {
  local account="$1" what="$2" expr="$3" output id
  id="client-$(printf '%s' "$cycle_end" | tr -d ':-')-$account"
  output="$(invoke list-statements "$(api_event list-statements "$account")")"
  check "list-statements $account: $what" "$output" \
    "r['statusCode'] == 200 and any(($expr) for s in body['statements'] if s['statementId'] == '$id')"
}

balances_check() {
  local account="$1" what="$2" expr="$3"
  check "get-balances $account: $what" "$(invoke get-balances "$(api_event get-balances "$account")")" \
    "r['statusCode'] == 200 and ($expr)"
}

intents_of() { stripe GET "/v1/payment_intents?customer=$1&limit=100" | json_field '["data"].__len__()'; }

finish() {
  # The billed statement's cycle end, as stored (milliseconds, Z).
  cycle_end="$(python3 -c 'import sys,datetime; t=datetime.datetime.fromisoformat(sys.argv[1].replace("Z","+00:00")); print(t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z")' "$cycle_end")"
  # shellcheck disable=SC1090
  source "$state_file"
  local collect="{\"cycleEnd\": \"$cycle_end\"}" output held_id
  output="$(invoke collect-payments "$collect")"
  check "collect-payments $collect -> no errors" "$output" 'r["errors"] == 0 and r["inFlight"] == 0'

  statement_check "$good" "paid" "s['status'] == 'paid' and s['amountDue'] == '0.00'"
  balances_check "$good" "nothing outstanding, no hold" \
    "body['creditLine']['outstanding'] == '0.00' and body['holdStatementId'] is None"

  statement_check "$declining" "payment_failed" "s['status'] == 'payment_failed'"
  held_id="client-$(printf '%s' "$cycle_end" | tr -d ':-')-$declining"
  balances_check "$declining" "on hold ($held_id)" "body['holdStatementId'] == '$held_id'"
  output="$(invoke purchase-credits "$(api_event purchase-credits "$declining" '{"quantities": {"pixel": 1}}')")"
  check "purchase-credits $declining -> 402 account_on_hold" "$output" \
    "r['statusCode'] == 402 and body['code'] == 'account_on_hold'"

  # The client fixes its card: a good one becomes the customer's default.
  local method
  method="$(stripe POST /v1/payment_methods/pm_card_visa/attach "customer=$declining_customer" | json_field '["id"]')"
  stripe POST "/v1/customers/$declining_customer" "invoice_settings[default_payment_method]=$method" >/dev/null
  step "ok   localstripe: $method (4242...) is now $declining_customer's default card"

  # The retry (attempt 2) is due 3 days after the failure (COLLECT_RETRY_DAYS); collect-payments reads the real
  # clock, so move the failed attempt's due time into the past, as waiting would (only a failed attempt).
  local sk
  sk="$(aws dynamodb query --region "$AWS_REGION" --endpoint-url "$AWS_ENDPOINT_URL_DYNAMODB" --table-name "$TABLE_NAME" \
    --key-condition-expression 'pk = :pk AND begins_with(sk, :statement)' --filter-expression 'statementId = :id' \
    --expression-attribute-values "{\":pk\": {\"S\": \"ACCOUNT#$declining\"}, \":statement\": {\"S\": \"STATEMENT#\"}, \":id\": {\"S\": \"$held_id\"}}" \
    --query 'Items[0].sk.S' --output text)"
  aws dynamodb update-item --region "$AWS_REGION" --endpoint-url "$AWS_ENDPOINT_URL_DYNAMODB" --table-name "$TABLE_NAME" \
    --key "{\"pk\": {\"S\": \"ACCOUNT#$declining\"}, \"sk\": {\"S\": \"$sk\"}}" \
    --update-expression 'SET collectNextAt = :past' --condition-expression 'collectState = :failed' \
    --expression-attribute-values '{":past": {"S": "2000-01-01T00:00:00.000Z"}, ":failed": {"S": "failed"}}' ||
    fail "moving the retry date of $held_id (is attempt 1 failed?)"
  step "ok   the retry of $held_id is due now (attempt 1 failed)"

  output="$(invoke collect-payments "$collect")"
  check "collect-payments $collect again -> the retry succeeded" "$output" \
    'r["succeeded"] >= 1 and r["errors"] == 0 and r["inFlight"] == 0'
  statement_check "$declining" "paid by the retry" "s['status'] == 'paid' and s['amountDue'] == '0.00'"
  balances_check "$declining" "hold lifted, nothing outstanding" \
    "body['holdStatementId'] is None and body['creditLine']['outstanding'] == '0.00'"
  output="$(invoke purchase-credits "$(api_event purchase-credits "$declining" '{"quantities": {"pixel": 1}}')")"
  check "purchase-credits $declining -> 201 again" "$output" 'r["statusCode"] == 201'

  local paid_intents failed_intents
  paid_intents="$(intents_of "$good_customer")" failed_intents="$(intents_of "$declining_customer")"
  [ "$paid_intents" = 1 ] && [ "$failed_intents" = 2 ] ||
    fail "localstripe PaymentIntents: $paid_intents for $good (want 1), $failed_intents for $declining (want 2: one per attempt)"
  steps=$((steps + 1)); step "ok   localstripe: 1 PaymentIntent for $good, 2 for $declining (one per attempt)"
  rm -f "$state_file"
}

case "$mode" in
  prepare) prepare ;;
  finish) finish ;;
  all)
    prepare
    sleep 1 # the cycle end is a whole second after the purchases' createdAt
    cycle_end="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    step "waiting out billing's grace (60 s) before billing the cycle ending $cycle_end"
    sleep 61
    output="$(invoke billing-run "{\"cycleEnd\": \"$cycle_end\", \"offCycle\": true}")"
    check "billing-run (off-cycle, ending $cycle_end) -> both purchases billed" "$output" \
      'r["purchasesBilledToClient"] >= 2 and r["complete"]'
    finish
    ;;
esac
step "passed: $steps checks"
