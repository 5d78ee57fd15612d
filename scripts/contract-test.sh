#!/usr/bin/env bash
# Contract test: schemathesis generates requests from infra/openapi.yaml, sends them to a running gateway
# (the local dev gateway, or a deployed API) and checks every response against the spec.
#
# Every operation of the contract, every check, positive and negative data, all four phases (examples, coverage,
# fuzzing, and stateful along the contract's `links`). Nothing here names an operation: one added to the contract
# is tested by the next run. scripts/contract-hooks.py gives the two values that are not free-form data their real
# values (a fresh Idempotency-Key instead of one stored for another request; a cursor the list really issued).
# Prints the seed and one line of figures; exits non-zero on any failure. Run it against a fresh stack (as
# scripts/test.sh does): on a long-lived one, a key stored by an earlier run within 24 hours can meet another body.
#
#   GATEWAY_URL      base URL (default http://127.0.0.1:3000)
#   CONTRACT_ACCOUNT_ID  the account the generated requests act for (default acct-northwind-bikes: not the
#                    panel's account, so the browser tests that follow on the same stack still have Pay Later
#                    credit: generated purchases use up the whole line)
#   CONTRACT_TOKEN   bearer token; default: a dev token for that account, signed
#                    with the dev gateway's key (DEV_JWT_KEY_FILE, shared with the running gateway; only the
#                    dev gateway accepts it; a deployed API needs a real token)
#   CONTRACT_AGENCY_ID  the agency the agency routes' requests act for (default agency-plainsail: neither the
#                    panel's agency nor the console's, whose prices and clients the browser tests check)
#   CONTRACT_AGENCY_TOKEN  bearer token for the /agencies/ routes; default: a dev token of that agency's
#                    administrator (custom:agency_id + cognito:groups agency-admin), signed like CONTRACT_TOKEN
#   MAX_EXAMPLES     test cases per operation and phase (default 150)
#   MAX_RESPONSE_S   slowest acceptable response, seconds (default 5)
#   CONTRACT_SEED    schemathesis seed (default 20261126: fixed, so a failure replays with the same command)
set -euo pipefail
cd "$(dirname "$0")/.."

GATEWAY_URL=${GATEWAY_URL:-http://127.0.0.1:3000}
GATEWAY_URL=${GATEWAY_URL%/}
MAX_EXAMPLES=${MAX_EXAMPLES:-150}
MAX_RESPONSE_S=${MAX_RESPONSE_S:-5}
CONTRACT_SEED=${CONTRACT_SEED:-20261126}
ACCOUNT_ID=${CONTRACT_ACCOUNT_ID:-acct-northwind-bikes}
AGENCY_ID=${CONTRACT_AGENCY_ID:-agency-plainsail}

command -v schemathesis >/dev/null || pip install --quiet "$(grep '^schemathesis==' scripts/requirements-tools.txt)"

# Signed with the key file the running gateway verifies with (same DEV_JWT_KEY_FILE, DEV_JWT_ISSUER, DEV_JWT_AUDIENCE).
DEV_TOKEN=${CONTRACT_TOKEN:-$(node dev/gateway.mjs --print-token "$ACCOUNT_ID")}
AGENCY_TOKEN=${CONTRACT_AGENCY_TOKEN:-$(node dev/gateway.mjs --print-token "admin-$AGENCY_ID" \
  --claims "{\"custom:agency_id\":\"$AGENCY_ID\",\"cognito:groups\":[\"agency-admin\"]}")}

# The first request to a local function may compile it (minutes on a cold target dir): warm up every operation of
# the contract (read from it; the token's account, a placeholder for any other path parameter) so that compile
# time does not count against --max-response-time.
operations=$(python3 - "$ACCOUNT_ID" "$AGENCY_ID" <<'PY'
import re, sys, yaml
paths = yaml.safe_load(open("infra/openapi.yaml", encoding="utf-8"))["paths"]
for path, item in paths.items():
    for method in item:
        if method in ("get", "put", "post", "delete", "patch"):
            path = path.replace("{accountId}", sys.argv[1]).replace("{agencyId}", sys.argv[2])
            print(method.upper(), re.sub(r"\{[^}]*\}", "warm-up", path))
PY
)
while read -r method path; do
  token=$DEV_TOKEN
  [[ $path == /agencies/* ]] && token=$AGENCY_TOKEN
  status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 600 -X "$method" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' --data-binary '{}' \
    "$GATEWAY_URL$path" || true)
  if [[ $status == 000 ]]; then
    echo "contract-test: no gateway answering at $GATEWAY_URL (start it first, or set GATEWAY_URL)" >&2
    exit 2
  fi
  echo "warm-up: $method $path -> $status"
done <<<"$operations"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Most generated cases use the seeded account (the token's own); the rest exercise 403 and 400.
cat >"$work/schemathesis.toml" <<EOF
[dictionaries.accounts]
values = ["$ACCOUNT_ID"]

[dictionaries.agencies]
values = ["$AGENCY_ID"]

[parameters]
"path.accountId" = { dictionary = "accounts", probability = 0.8 }
"path.agencyId" = { dictionary = "agencies", probability = 0.8 }

# The agency's routes act as its administrator (this header replaces the client token given on the command line).
[[operations]]
include-path-regex = "^/agencies/"
headers = { Authorization = "Bearer $AGENCY_TOKEN" }

# A schema-valid purchase may be refused by the account's state, not its shape: 402 when it is above what the
# Pay Later line has available (generated quantities reach millions of dollars) or the account is on hold. A
# schema-valid price change likewise: 412 when its If-Match is not the current version (a generated one rarely
# is), 422 when a price is below its cost.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "402", "403", "404", "409", "412", "422", "429", "5xx"]
EOF

# POST /webhooks/stripe is in the contract but not fuzzed: only a body signed with the endpoint secret gets past
# its first check, which no generated case can be (its refusals and outcomes: `cargo test -p shared --test it
# collection::`).
echo "contract-test: seed $CONTRACT_SEED (replay: CONTRACT_SEED=$CONTRACT_SEED MAX_EXAMPLES=$MAX_EXAMPLES scripts/contract-test.sh)"
set +e
SCHEMATHESIS_HOOKS=scripts/contract-hooks.py schemathesis --config-file "$work/schemathesis.toml" run infra/openapi.yaml \
  --url "$GATEWAY_URL" \
  --header "Authorization: Bearer $DEV_TOKEN" \
  --checks all \
  --mode all \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$MAX_EXAMPLES" \
  --seed "$CONTRACT_SEED" \
  --generation-database none \
  --max-response-time "$MAX_RESPONSE_S" \
  --request-timeout 15 \
  --generation-with-security-parameters false \
  --exclude-path /webhooks/stripe \
  --workers 1 \
  --no-color 2>&1 | tee "$work/output.log"
status=${PIPESTATUS[0]}
set -e

# One line with the figures, from schemathesis's summary: operations tested, cases, links the stateful phase followed.
python3 - "$work/output.log" "$status" "$CONTRACT_SEED" <<'PY'
import re, sys
log = open(sys.argv[1], encoding="utf-8").read()
def last(pattern, default):
    found = re.findall(pattern, log, re.M)
    return found[-1].strip() if found else default
operations = last(r"^\s*Operations:\s*(.*)$", "none loaded")
tested = last(r"^\s*Tested:\s*(\d+)\s*$", "0")
cases = last(r"^\s*(\d+ generated.*)$", "no cases run")
links = last(r"^\s*API Links:\s*(.*)$", "none")
failures = last(r"(\d+ failures?) in \d", "0 failures")
print(f"contract-test: operations {operations}, {tested} tested; cases: {cases}; stateful links: {links}; "
      f"{failures}; seed {sys.argv[3]}; schemathesis exit {sys.argv[2]}")
PY
exit "$status"
