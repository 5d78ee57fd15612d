#!/usr/bin/env bash
# Contract test: schemathesis generates requests from infra/openapi.yaml, sends them to a running gateway
# (the local dev gateway, or a deployed API) and checks every response against the spec.
#
#   GATEWAY_URL      base URL (default http://127.0.0.1:3000)
#   DEV_TOKEN        bearer token; default: a dev token for the seeded account acct-northwind-coffee, signed
#                    with the dev gateway's key (DEV_JWT_KEY_FILE, shared with the running gateway; only the
#                    dev gateway accepts it; a deployed API needs a real token)
#   MAX_EXAMPLES     test cases per operation and phase (default 30)
#   MAX_RESPONSE_S   slowest acceptable response, seconds (default 5)
#   CONTRACT_SEED    schemathesis seed, to reproduce a run
set -euo pipefail
cd "$(dirname "$0")/.."

GATEWAY_URL=${GATEWAY_URL:-http://127.0.0.1:3000}
GATEWAY_URL=${GATEWAY_URL%/}
MAX_EXAMPLES=${MAX_EXAMPLES:-30}
MAX_RESPONSE_S=${MAX_RESPONSE_S:-5}
ACCOUNT_ID=acct-northwind-coffee

command -v schemathesis >/dev/null || pip install --quiet "$(grep '^schemathesis==' scripts/requirements-tools.txt)"

# Signed with the key file the running gateway verifies with (same DEV_JWT_KEY_FILE, DEV_JWT_ISSUER, DEV_JWT_AUDIENCE).
DEV_TOKEN=${DEV_TOKEN:-$(node dev/gateway.mjs --print-token "$ACCOUNT_ID")}

# The first request to a local function may compile it (minutes on a cold target dir): warm every
# function up here so that compile time does not count against --max-response-time.
for path in pricing balances credit-purchases; do
  method=GET; [[ $path == credit-purchases ]] && method=POST
  status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 600 -X "$method" \
    -H "Authorization: Bearer $DEV_TOKEN" -H 'Content-Type: application/json' --data-binary '{}' \
    "$GATEWAY_URL/accounts/$ACCOUNT_ID/$path" || true)
  if [[ $status == 000 ]]; then
    echo "contract-test: no gateway answering at $GATEWAY_URL (start it first, or set GATEWAY_URL)" >&2
    exit 2
  fi
  echo "warm-up: $method /accounts/$ACCOUNT_ID/$path -> $status"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Most generated cases use the seeded account (the token's own); the rest exercise 403 and 400.
cat >"$work/schemathesis.toml" <<EOF
[dictionaries.accounts]
values = ["$ACCOUNT_ID"]

[parameters]
"path.accountId" = { dictionary = "accounts", probability = 0.8 }
EOF

set +e
schemathesis --config-file "$work/schemathesis.toml" run infra/openapi.yaml \
  --url "$GATEWAY_URL" \
  --header "Authorization: Bearer $DEV_TOKEN" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$MAX_EXAMPLES" \
  --max-response-time "$MAX_RESPONSE_S" \
  --request-timeout 15 \
  --generation-with-security-parameters false \
  --workers 1 \
  ${CONTRACT_SEED:+--seed "$CONTRACT_SEED"} \
  --no-color \
  --report junit --report-junit-path "$work/junit.xml" 2>&1 | tee "$work/output.log"
status=${PIPESTATUS[0]}
set -e

# One line with the figures: operations from the JUnit report (a test case per operation), cases from the summary.
python3 - "$work/junit.xml" "$work/output.log" "$status" <<'EOF'
import re, sys, xml.etree.ElementTree as ET
try:
    operations = ET.parse(sys.argv[1]).getroot().findall(".//testcase")
except (OSError, ET.ParseError):
    operations = []
failing = sum(1 for o in operations if o.find("failure") is not None or o.find("error") is not None)
summary = re.findall(r"^\s*(\d+ generated.*)$", open(sys.argv[2], encoding="utf-8").read(), re.M)
cases = summary[-1].strip() if summary else "no cases run"
print(f"contract-test: {len(operations)} operations ({failing} failing); cases: {cases}; schemathesis exit {sys.argv[3]}")
EOF
exit "$status"
