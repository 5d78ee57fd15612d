#!/usr/bin/env bash
# wait-for-event.sh TYPE [ACCOUNT_ID] [SECONDS] [AFTER_LINE]: waits until $EVENTS_LOG (the envelopes the local stand-in
# bus received, dev/event-pipeline.mjs) holds an event of TYPE (for ACCOUNT_ID if given, after line AFTER_LINE if
# given), prints each such envelope (JSON lines) and exits 0; exits 1 after SECONDS (default 20).
set -euo pipefail
type="$1" account="${2:-}" seconds="${3:-20}" after="${4:-0}"
[ -n "${EVENTS_LOG:-}" ] || { echo "wait-for-event: EVENTS_LOG is not set (start the stack's event pipeline)" >&2; exit 2; }
for ((i = 0; i < seconds * 4; i++)); do
  found="$(tail -n "+$((after + 1))" "$EVENTS_LOG" | python3 -c '
import json, sys
kind, account = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    event = json.loads(line)
    if event["type"] == kind and (not account or event["detail"].get("accountId") == account):
        print(line.strip())
' "$type" "$account")"
  if [ -n "$found" ]; then printf '%s\n' "$found"; exit 0; fi
  sleep 0.25
done
echo "wait-for-event: no $type${account:+ of $account} in $EVENTS_LOG within ${seconds}s" >&2
exit 1
