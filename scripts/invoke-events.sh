#!/usr/bin/env bash
# Invokes every sample event in events/ with `cargo lambda invoke` against a running `cargo lambda watch`
# and checks the status each file name promises: <function>.json -> 2xx, *-bad-input.json -> 400,
# *-forbidden.json -> 403. Usage: scripts/invoke-events.sh [INVOKE_PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-9000}"
passed=0 failed=0
for file in events/*.json; do
  name="$(basename "$file" .json)"
  case "$name" in
    *-bad-input) function="${name%-bad-input}"; want="400" ;;
    *-forbidden) function="${name%-forbidden}"; want="403" ;;
    billing-run*) continue ;; # not an HTTP function; checked by its own test
    purchase-credits) function="$name"; want="201" ;;
    *) function="$name"; want="200" ;;
  esac
  output="$(cargo lambda invoke "$function" --data-file "$file" -P "$port" 2>&1)" || true
  got="$(printf '%s' "$output" | python3 -c 'import json,sys; print(json.load(sys.stdin)["statusCode"])' 2>/dev/null || echo "no-response")"
  if [ "$got" = "$want" ]; then
    passed=$((passed + 1)); echo "ok   $function $file -> $got"
  else
    failed=$((failed + 1)); echo "FAIL $function $file -> $got (want $want)"; printf '%s\n' "$output" | head -c 2000; echo
  fi
done
echo "invoke-events: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
