# Sourced by the walkthroughs (scripts/collection-walkthrough.sh, scripts/consumption-walkthrough.sh): their steps,
# how they invoke a function under `cargo lambda watch` on $port, and how they check an answer.
steps=0
step() { printf 'walk [%3ss]: %s\n' "$SECONDS" "$*"; }
fail() { printf 'walk: FAIL %s\n' "$*" >&2; exit 1; }

# invoke FUNCTION JSON: the function's answer (its error, if it failed, for the check to reject).
invoke() { cargo lambda invoke "$1" -P "$port" --data-ascii "$2" 2>&1 || true; }

# check WHAT OUTPUT PYTHON_EXPR: the expression over `r` (the answer) and `body` (an API answer's parsed body, else
# the answer itself) must hold; else the step fails with the answer.
check() {
  local what="$1" output="$2" expr="$3"
  if CHECK_EXPR="$expr" python3 -c '
import json, os, sys
r = json.loads(sys.stdin.read())
body = json.loads(r["body"]) if isinstance(r, dict) and isinstance(r.get("body"), str) and r["body"] else r
sys.exit(0 if eval(os.environ["CHECK_EXPR"]) else 1)' <<<"$output" 2>/dev/null; then
    steps=$((steps + 1)); step "ok   $what"
  else
    fail "$what: $(printf '%s' "$output" | head -c 1500)"
  fi
}

# api_event TEMPLATE ACCOUNT [BODY]: a sample API event (events/TEMPLATE.json) for another account of the same
# agency (the sample's account id replaced everywhere: path, claims), with BODY as its body when given.
api_event() {
  python3 - "$1" "$2" "${3:-}" <<'EOF'
import json, sys, uuid
template, account, body = sys.argv[1:4]
event = json.loads(open(f"events/{template}.json").read().replace("acct-northwind-coffee", account))
if body:
    event["body"] = body
event["requestContext"]["requestId"] = f"walk-{uuid.uuid4()}"
print(json.dumps(event))
EOF
}

# provision_with_line ACCOUNT AGENCY LIMIT [STRIPE_CUSTOMER]: a new account of AGENCY (provision-account) and the
# pay-later limit its agency gives it (agency-write): a provisioned account has no credit until then.
provision_with_line() {
  local account="$1" agency="$2" limit="$3" customer="${4:-}" output
  output="$(invoke provision-account "{\"action\": \"upsertAccount\", \"requestId\": \"walk-$account\",
    \"accountId\": \"$account\", \"agencyId\": \"$agency\", \"name\": \"Walkthrough $account\"${customer:+,
    \"stripeCustomerId\": \"$customer\"}}")"
  check "provision-account $account -> applied" "$output" 'r["result"] == "applied"'
  output="$(invoke agency-write "$(api_event agency-write-credit-limit "$account" "{\"creditLimit\": \"$limit\"}")")"
  check "agency-write credit limit $limit of $account -> 200" "$output" 'r["statusCode"] == 200'
}
