#!/usr/bin/env bash
# README command 1: set up and run the service locally, on a fresh machine.
# Installs what is missing, starts dynoxide with its data in .local/ (git-ignored), creates the table,
# loads the seeds, runs `cargo lambda watch`, serves the dashboard and the API through the dev gateway,
# then prints how to call it. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

DYNAMO_PORT="${DYNAMO_PORT:-8000}"
INVOKE_PORT="${INVOKE_PORT:-9000}"
GATEWAY_PORT="${GATEWAY_PORT:-3000}"
STRIPE_PORT="${STRIPE_PORT:-12111}"

source scripts/install-tools.sh dev
mkdir -p .local/logs
export STACK_LOG_DIR="$PWD/.local/logs"
source scripts/local-stack.sh
trap stack_stop EXIT INT TERM

stack_start_dynamo "$DYNAMO_PORT" "$PWD/.local/dynamo.db"
stack_start_stripe "$STRIPE_PORT"
# The dashboard shows a paid and a declined statement (the declining account held): dev only, never the tests' stack.
SEED_SETTLED_STATEMENTS=1 stack_seed
stack_start_functions "$INVOKE_PORT"
stack_start_gateway "$GATEWAY_PORT"
stack_start_events
token="$(node dev/gateway.mjs --print-token acct-northwind-coffee)"
agency_token="$(node dev/gateway.mjs --print-agency-token agency-northwind)"

cat <<MSG

  overage-credits is running locally (logs in .local/logs, data in .local/dynamo.db)

  Dashboard:  $GATEWAY_URL/
  Agency console:  $GATEWAY_URL/agency.html  (signed in as agency-northwind's administrator)
  Invoke a function with a sample event (functions served by cargo lambda watch on :$INVOKE_PORT):
    cargo lambda invoke get-pricing      --data-file events/get-pricing.json      -P $INVOKE_PORT
    cargo lambda invoke purchase-credits --data-file events/purchase-credits.json -P $INVOKE_PORT
    cargo lambda invoke get-balances     --data-file events/get-balances.json     -P $INVOKE_PORT
  Call the API as the dashboard does (dev gateway; the token is signed by the gateway's local dev key, valid 24 h):
    curl -H "Authorization: Bearer $token" $GATEWAY_URL/accounts/acct-northwind-coffee/pricing
    curl -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \\
         -H "Idempotency-Key: \$(uuidgen 2>/dev/null || date +%s%N)" \\
         -d '{"quantities": {"audience": 10, "pixel": 5}, "expectedTotal": "300.00"}' \\
         $GATEWAY_URL/accounts/acct-northwind-coffee/credit-purchases
  As the agency's administrator (custom:agency_id + cognito:groups ["agency-admin"]):
    curl -i -H "Authorization: Bearer $agency_token" $GATEWAY_URL/agencies/agency-northwind/pricing
  Stripe (localstripe on $STRIPE_API_BASE; its webhooks go to $GATEWAY_URL/webhooks/stripe):
    cargo lambda invoke collect-payments --data-file events/collect-payments.json -P $INVOKE_PORT
    (acct-brightside-dental's card declines: DEV_ACCOUNT_ID=acct-brightside-dental shows it in the panel)
  Provision an account (IAM-invoked in AWS):
    cargo lambda invoke provision-account --data-file events/provision-account.json -P $INVOKE_PORT
  Use the same engine from other tools with:
    export AWS_ENDPOINT_URL_DYNAMODB=$AWS_ENDPOINT_URL_DYNAMODB TABLE_NAME=$TABLE_NAME AWS_REGION=$AWS_REGION AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local

  Events (the table's stream -> publish-events -> a stand-in bus) print below as they happen; every envelope
  is in $EVENTS_LOG. To watch a low-balance alert and an auto top-up happen from
  cargo lambda invoke consume-credits (a fresh account, its rules set through the API), in another terminal:
    GATEWAY_PORT=$GATEWAY_PORT scripts/consumption-walkthrough.sh $INVOKE_PORT

  Ctrl-C stops everything.
MSG
tail -n 0 -F "$STACK_LOG_DIR/events.log" &
events_tail=$!
trap 'kill "$events_tail" 2>/dev/null; stack_stop' EXIT INT TERM
wait
