#!/usr/bin/env bash
# Invokes every sample event in events/ with `cargo lambda invoke` against a running `cargo lambda watch`
# and checks the status each file name promises: <function>.json -> 2xx, *-bad-input.json -> 400,
# *-forbidden.json -> 403. list-statement-purchases*.json are routes of the list-statements function,
# list-ledger*.json the ledger route of the list-purchases function, get-balances-<route>*.json and
# purchase-credits-<route>*.json the client's rules routes of those functions. consume-credits*.json are direct
# invokes
# (no HTTP status): the valid one must answer a consumption (a replay on a stack it ran on before), the release
# a release, the bad input the error type InvalidConsumptionEvent.
# collect-payments*.json and provision-account*.json are direct invokes too (see below). The consumption walkthrough
# (scripts/consumption-walkthrough.sh: an alert and an auto top-up, read back from the local bus) runs last. The collection
# walkthrough (scripts/collection-walkthrough.sh) runs in two halves around the billing run. stripe-webhook.json is
# signed at invoke time with STRIPE_WEBHOOK_SECRET (scripts/sign-webhook-event.py); its -bad-input is a forged
# signature (400).
# Usage: scripts/invoke-events.sh [INVOKE_PORT]   (with the local stack's environment: source scripts/local-stack.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-9000}"
passed=0 failed=0

# The sample statement (the cycle ending 2026-11-01) needs a purchase made before that, which the API cannot
# make: bill the seeded account's purchase up to now instead and ask for that statement, so the valid call
# really answers 200 on a fresh stack.
cargo lambda invoke purchase-credits --data-file events/purchase-credits.json -P "$port" >/dev/null 2>&1 || true
# The collection walkthrough's first half (its own accounts, customers and purchases): the billing run below bills
# them too, and its second half runs at the end (scripts/collection-walkthrough.sh).
export WALKTHROUGH_ID="ci$(date -u +%H%M%S)$RANDOM"
if scripts/collection-walkthrough.sh prepare "$port"; then walk_prepared=1; else walk_prepared=0; fi
sleep 1 # the cycle end below is a whole second, after the purchase's createdAt
billed_at="$(date -u +%Y-%m-%dT%H:%M:%S)"
# Not a month boundary, so the run must say it is off-cycle; and billing-run refuses a cycle end less than its
# grace (BILLING_GRACE, 60 s) ago, so purchases stamped before it have committed.
sleep 61
billing_output="$(cargo lambda invoke billing-run --data-ascii "{\"cycleEnd\": \"${billed_at}Z\", \"offCycle\": true}" -P "$port" 2>&1)" || true
if printf '%s' "$billing_output" | python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["purchasesBilledToClient"] >= 1' 2>/dev/null; then
  passed=$((passed + 1)); echo "ok   billing-run (cycle ending now) -> a statement for acct-northwind-coffee"
else
  failed=$((failed + 1)); echo "FAIL billing-run (cycle ending now)"; printf '%s\n' "$billing_output" | head -c 2000; echo
fi
# record-payment is invoked directly (not HTTP): a partial payment of the statement billed above answers a
# receipt; a malformed amount is refused with its own errorType. The failure sample is only for developers
# (it would put the seeded account on hold for the tests that follow).
statement_cycle="$(printf '%s' "$billed_at" | tr -d ':-').000Z"
payment_output="$(cargo lambda invoke record-payment -P "$port" \
  --data-ascii "$(sed "s/20261101T000000\.000Z/$statement_cycle/g; s/sample-payment-1/sample-payment-$RANDOM$RANDOM/" events/record-payment.json)" 2>&1)" || true
if printf '%s' "$payment_output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["result"] == "recorded" and r["amountPaid"] == "1.00"' 2>/dev/null; then
  passed=$((passed + 1)); echo "ok   record-payment events/record-payment.json -> recorded"
else
  failed=$((failed + 1)); echo "FAIL record-payment events/record-payment.json"; printf '%s\n' "$payment_output" | head -c 2000; echo
fi
refused_output="$(cargo lambda invoke record-payment -P "$port" --data-file events/record-payment-bad-input.json 2>&1)" || true
if printf '%s' "$refused_output" | grep -q 'InvalidPaymentEvent'; then
  passed=$((passed + 1)); echo "ok   record-payment events/record-payment-bad-input.json -> InvalidPaymentEvent"
else
  failed=$((failed + 1)); echo "FAIL record-payment events/record-payment-bad-input.json"; printf '%s\n' "$refused_output" | head -c 2000; echo
fi
sweep_output="$(cargo lambda invoke statement-sweep -P "$port" --data-file events/statement-sweep.json 2>&1)" || true
if printf '%s' "$sweep_output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert "markedOverdue" in r' 2>/dev/null; then
  passed=$((passed + 1)); echo "ok   statement-sweep events/statement-sweep.json -> $sweep_output"
else
  failed=$((failed + 1)); echo "FAIL statement-sweep events/statement-sweep.json"; printf '%s\n' "$sweep_output" | head -c 2000; echo
fi

# collect-payments (direct invoke): after the partial payment above, the rest of that statement is charged to the
# seeded customer's card in localstripe (the local stack's STRIPE_API_BASE); a run answers its summary (no
# errors, at least that statement paid), a bad cycle end is refused with InvalidCollectEvent.
collect_output="$(cargo lambda invoke collect-payments --data-file events/collect-payments.json -P "$port" 2>&1)" || true
if printf '%s' "$collect_output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["succeeded"] >= 1 and r["errors"] == 0, r' 2>/dev/null; then
  passed=$((passed + 1)); echo "ok   collect-payments events/collect-payments.json -> $collect_output"
else
  failed=$((failed + 1)); echo "FAIL collect-payments events/collect-payments.json"; printf '%s\n' "$collect_output" | head -c 2000; echo
fi
# provision-account (direct invoke), in order: a new client of a seeded agency, a new agency, the client moved to
# it; each answers applied (or replayed, on a stack it ran on before: every request applies once). The bad input
# (an unknown field, a malformed customer id) is refused with InvalidProvisionRequest.
for case in provision-account provision-account-agency provision-account-move; do
  output="$(cargo lambda invoke provision-account --data-file "events/$case.json" -P "$port" 2>&1)" || true
  if printf '%s' "$output" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["result"] in ("applied", "replayed"), r' 2>/dev/null; then
    passed=$((passed + 1)); echo "ok   provision-account events/$case.json -> $output"
  else
    failed=$((failed + 1)); echo "FAIL provision-account events/$case.json"; printf '%s\n' "$output" | head -c 2000; echo
  fi
done
output="$(cargo lambda invoke provision-account --data-file events/provision-account-bad-input.json -P "$port" 2>&1)" || true
if printf '%s' "$output" | grep -q 'InvalidProvisionRequest'; then
  passed=$((passed + 1)); echo "ok   provision-account events/provision-account-bad-input.json -> InvalidProvisionRequest"
else
  failed=$((failed + 1)); echo "FAIL provision-account events/provision-account-bad-input.json"; printf '%s\n' "$output" | head -c 2000; echo
fi

# consume-credits: after the purchase above, so the seeded account has audience credits to spend.
for case in "consume-credits:\"result\":\"consumed\"" "consume-credits-release:\"result\":\"released\"" \
  "consume-credits-bad-input:InvalidConsumptionEvent"; do
  name="${case%%:*}" want="${case#*:}"
  output="$(cargo lambda invoke consume-credits --data-file "events/$name.json" -P "$port" 2>&1)" || true
  if printf '%s' "$output" | tr -d ' \n' | grep -qF "$want"; then
    passed=$((passed + 1)); echo "ok   consume-credits events/$name.json -> $want"
  else
    failed=$((failed + 1)); echo "FAIL consume-credits events/$name.json (want $want)"; printf '%s\n' "$output" | head -c 2000; echo
  fi
done
# publish-events, a stream consumer: its samples put on the stand-in bus of dev/event-pipeline.mjs
# (AWS_ENDPOINT_URL_EVENTBRIDGE); the valid batch answers no failure, the bad one hands its record back.
for case in 'publish-events:"batchItemFailures":[]' 'publish-events-bad-input:"itemIdentifier":'; do
  name="${case%%:*}" want="${case#*:}"
  output="$(cargo lambda invoke publish-events --data-file "events/$name.json" -P "$port" 2>&1)" || true
  if printf '%s' "$output" | tr -d ' \n' | grep -qF "$want"; then
    passed=$((passed + 1)); echo "ok   publish-events events/$name.json -> $want"
  else
    failed=$((failed + 1)); echo "FAIL publish-events events/$name.json (want $want)"; printf '%s\n' "$output" | head -c 2000; echo
  fi
done
for file in events/*.json; do
  name="$(basename "$file" .json)"
  case "$name" in
    record-payment*|statement-sweep*|consume-credits*|collect-payments*|provision-account*) continue ;; # not HTTP functions; invoked above
    publish-events*) continue ;; # a stream consumer: invoked above
    *-bad-input) function="${name%-bad-input}"; want="400" ;;
    *-forbidden) function="${name%-forbidden}"; want="403" ;;
    billing-run*|consume-credits*) continue ;; # not HTTP functions; checked above
    purchase-credits) function="$name"; want="201" ;;
    *) function="$name"; want="200" ;;
  esac
  data=(--data-file "$file")
  if [ "$function" = "list-ledger" ]; then
    function="list-purchases"
  fi
  # The agency's routes: agency-read-<route>*.json and agency-write-<route>*.json are events of those functions.
  case "$function" in
    agency-read-*) function="agency-read" ;;
    agency-write-*) function="agency-write" ;;
    # The client's rules: get-balances-{alerts,topups}*.json the reads, purchase-credits-{alerts,topups}*.json
    # the changes (of acct-plainsail-bakery, not the panel's account).
    get-balances-*) function="get-balances" ;;
    purchase-credits-*) function="purchase-credits" ;;
  esac
  if [ "$name" = "agency-write-void" ]; then
    # A fresh stack has no purchase of the sample's id: void one made here (still unbilled).
    made="$(cargo lambda invoke purchase-credits --data-file events/purchase-credits.json -P "$port" 2>&1)" || true
    made_id="$(printf '%s' "$made" | python3 -c 'import json,sys; print(json.loads(json.load(sys.stdin)["body"])["purchase"]["purchaseId"])' 2>/dev/null || echo none)"
    data=(--data-ascii "$(sed "s/0196a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b/$made_id/g" "$file")")
  fi
  if [ "$name" = "stripe-webhook" ]; then
    # A Stripe signature expires after 300 s: sign the sample's body now with the local stack's endpoint secret
    # (STRIPE_WEBHOOK_SECRET, exported by scripts/local-stack.sh). Its statement is unknown: acknowledged, 200.
    signed="$(python3 scripts/sign-webhook-event.py "$file")" || { failed=$((failed + 1)); echo "FAIL $file: not signed"; continue; }
    data=(--data-ascii "$signed")
  fi
  if [ "$function" = "list-statement-purchases" ]; then
    function="list-statements"
    if [ "$want" = "200" ]; then
      # The statement billed above instead of the sample's own (see the top of this script).
      data=(--data-ascii "$(sed "s/20261101T000000\.000Z/$(printf '%s' "$billed_at" | tr -d ':-').000Z/g" "$file")")
    fi
  fi
  output="$(cargo lambda invoke "$function" "${data[@]}" -P "$port" 2>&1)" || true
  got="$(printf '%s' "$output" | python3 -c 'import json,sys; print(json.load(sys.stdin)["statusCode"])' 2>/dev/null || echo "no-response")"
  if [ "$got" = "$want" ]; then
    passed=$((passed + 1)); echo "ok   $function $file -> $got"
  else
    failed=$((failed + 1)); echo "FAIL $function $file -> $got (want $want)"; printf '%s\n' "$output" | head -c 2000; echo
  fi
done
# The walkthrough's second half: the statements billed above, collected (a good card paid; a declining card
# failed, held, given a good card and retried: paid, hold lifted).
if [ "$walk_prepared" = 1 ] && scripts/collection-walkthrough.sh finish "${billed_at}Z" "$port"; then
  passed=$((passed + 1)); echo "ok   collection walkthrough (paid; declined -> hold -> retry -> paid)"
else
  failed=$((failed + 1)); echo "FAIL collection walkthrough (scripts/collection-walkthrough.sh; its output is above)"
fi
# An alert and an auto top-up from `cargo lambda invoke consume-credits`, seen on the bus (its own account).
if [ -n "${EVENTS_LOG:-}" ] && scripts/consumption-walkthrough.sh "$port"; then
  passed=$((passed + 1)); echo "ok   consumption walkthrough (credits.low once; auto top-up in the consumption; ledger labels it)"
else
  failed=$((failed + 1)); echo "FAIL consumption walkthrough (scripts/consumption-walkthrough.sh; its output is above)"
fi
# The pipeline end to end: the purchases above went from the table's stream through publish-events to the bus.
if [ -n "${EVENTS_LOG:-}" ] && scripts/wait-for-event.sh credits.purchased acct-northwind-coffee 20 >/dev/null; then
  passed=$((passed + 1)); echo "ok   stream -> publish-events -> bus: credits.purchased of acct-northwind-coffee in $EVENTS_LOG"
else
  failed=$((failed + 1)); echo "FAIL no credits.purchased reached the stand-in bus (EVENTS_LOG=${EVENTS_LOG:-unset})"
fi
echo "invoke-events: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
