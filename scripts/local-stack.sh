#!/usr/bin/env bash
# The local stack, as functions for scripts/dev.sh and scripts/test.sh to source:
# dynoxide (the DynamoDB engine) -> localstripe (a fake Stripe, 127.0.0.1 only) -> seed-loader (the seeded accounts
# and agencies get Stripe customers with cards) -> `cargo lambda watch` (the functions) -> dev/gateway.mjs (the
# stand-in for API Gateway and its JWT authorizer, serving the dashboard too; localstripe's webhooks go to it) ->
# dev/event-pipeline.mjs (the stream's event source mapping and a stand-in EventBridge bus around the real
# publish-events).
# Every service runs in its own process group and is stopped by stack_stop (trap it on EXIT).

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_LOG_DIR="${STACK_LOG_DIR:-$(mktemp -d /tmp/overage-credits-stack.XXXXXX)}"
STACK_PGIDS=()

export TABLE_NAME="${TABLE_NAME:-overage-credits}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
# The local engine accepts any credentials; real ones are never needed or sent anywhere.
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-local}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-local}"
export RUST_LOG="${RUST_LOG:-info}"
# publish-events puts on this bus, served by dev/event-pipeline.mjs (stack_start_events) on EVENT_BUS_PORT.
export EVENT_BUS_PORT="${EVENT_BUS_PORT:-4010}"
# The key the list functions sign their cursors with (deployed: a generated Secrets Manager secret). A fresh one per
# stack unless given: cursors of an earlier run are then refused (400) and a list starts again.
export CURSOR_SIGNING_KEY="${CURSOR_SIGNING_KEY:-$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')}"

stack_log() { printf '[stack] %s\n' "$*" >&2; }

# Starts "$@" in a new process group with its output in $STACK_LOG_DIR/<name>.log.
stack_spawn() {
  local name="$1"; shift
  setsid "$@" >"$STACK_LOG_DIR/$name.log" 2>&1 < /dev/null &
  local pid=$!
  STACK_PGIDS+=("$pid")
  echo "$pid"
}

stack_stop() {
  local pgid
  for pgid in "${STACK_PGIDS[@]:-}"; do
    [ -n "$pgid" ] || continue
    kill -TERM -- "-$pgid" 2>/dev/null || true
  done
  sleep 1
  for pgid in "${STACK_PGIDS[@]:-}"; do
    [ -n "$pgid" ] || continue
    kill -KILL -- "-$pgid" 2>/dev/null || true
  done
  STACK_PGIDS=()
}

# wait_for_http URL SECONDS [NAME]: waits until URL answers any HTTP status.
wait_for_http() {
  local url="$1" seconds="$2" name="${3:-$1}" i
  for ((i = 0; i < seconds * 5; i++)); do
    if curl -s -o /dev/null --max-time 2 "$url"; then return 0; fi
    sleep 0.2
  done
  stack_log "$name did not answer at $url within ${seconds}s; its log:"
  tail -n 40 "$STACK_LOG_DIR/$name.log" >&2 2>/dev/null || true
  return 1
}

port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# stack_start_dynamo PORT [DB_PATH]: in memory without a path.
stack_start_dynamo() {
  local port="$1" db_path="${2:-}"
  port_is_free "$port" || { stack_log "port $port is busy (dynoxide)"; return 1; }
  local args=(dynoxide --host 127.0.0.1 --port "$port" --log quiet)
  [ -n "$db_path" ] && args+=(--db-path "$db_path")
  stack_spawn dynoxide "${args[@]}" >/dev/null
  export AWS_ENDPOINT_URL_DYNAMODB="http://127.0.0.1:$port"
  wait_for_http "$AWS_ENDPOINT_URL_DYNAMODB/" 30 dynoxide
  stack_log "dynoxide on $AWS_ENDPOINT_URL_DYNAMODB${db_path:+ (data in $db_path)}"
}

# The Stripe settings collect-payments and stripe-webhook read at cold start. Deployed, the key and the signing
# secret come from Secrets Manager (STRIPE_SECRET_KEY_ARN / STRIPE_WEBHOOK_SECRET_ARN); locally the plain values
# below, which the template never sets (shared/tests/template_matches_code.rs checks it). localstripe takes any
# sk_test_ key; the signing secret is fresh per stack unless given.
export STRIPE_SECRET_KEY="${STRIPE_SECRET_KEY:-sk_test_local}"
export STRIPE_WEBHOOK_SECRET="${STRIPE_WEBHOOK_SECRET:-whsec_local$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
# The seeded account whose card attaches and then declines every charge (the failure path in the panel).
export STACK_DECLINING_ACCOUNT="${STACK_DECLINING_ACCOUNT:-acct-brightside-dental}"

# stack_start_stripe PORT: localstripe on 127.0.0.1:PORT (state in memory), through scripts/localstripe-serve.py
# (localstripe's own command binds every interface). Sets STRIPE_API_BASE for the functions and the seed step;
# stack_start_gateway registers its webhook endpoint.
stack_start_stripe() {
  local port="$1"
  port_is_free "$port" || { stack_log "port $port is busy (localstripe)"; return 1; }
  [ -n "${LOCALSTRIPE_PYTHON:-}" ] || { stack_log "LOCALSTRIPE_PYTHON is not set: source scripts/install-tools.sh"; return 1; }
  stack_spawn localstripe "$LOCALSTRIPE_PYTHON" "$repo_root/scripts/localstripe-serve.py" "$port" >/dev/null
  export STRIPE_API_BASE="http://127.0.0.1:$port"
  wait_for_http "$STRIPE_API_BASE/v1/customers" 30 localstripe
  stack_log "localstripe on $STRIPE_API_BASE"
}

# stack_seed [SEED_FILE ...]: the seed loader (default: every seeds/data/*.json). With localstripe running, each
# seeded account and agency first gets a Stripe customer there with a default card (STACK_DECLINING_ACCOUNT's
# declines), and the loader reads copies of the seed files carrying those stripeCustomerId values.
stack_seed() {
  local files=("$@")
  [ "${#files[@]}" -gt 0 ] || files=("$repo_root"/seeds/data/*.json)
  if [ -n "${STRIPE_API_BASE:-}" ]; then
    local out="$STACK_LOG_DIR/seeds-with-stripe"
    rm -rf "$out"
    local written
    written="$(python3 "$repo_root/scripts/localstripe-seed.py" "$STRIPE_API_BASE" "$out" \
      --declining "$STACK_DECLINING_ACCOUNT" "${files[@]}")" || { stack_log "creating Stripe customers failed"; return 1; }
    mapfile -t files <<<"$written"
    stack_log "Stripe customers in localstripe for the seeded accounts and agencies ($STACK_DECLINING_ACCOUNT's card declines)"
  fi
  (cd "$repo_root" && cargo run --quiet -p seed-loader -- "${files[@]}")
}

# stack_start_functions PORT [extra cargo lambda watch flags]: serves every function of the workspace on
# the IPv6 loopback, where a plain `cargo lambda invoke` (default address ::1) finds it.
stack_start_functions() {
  local port="$1"; shift
  (exec 3<>"/dev/tcp/::1/$port") 2>/dev/null && { stack_log "port $port is busy (cargo lambda watch)"; return 1; }
  # Build first so the first invocation is not a multi-minute compile.
  (cd "$repo_root" && cargo build --quiet --workspace --bins)
  # --timeout: how long an invocation may run (its context deadline), as the template's longest Timeout (600 s):
  # collect-payments stops starting statements 30 s before its deadline.
  stack_spawn functions bash -c "cd '$repo_root' && exec cargo lambda watch -A ::1 -P '$port' --timeout 600 \
    --env-var TABLE_NAME='$TABLE_NAME' --env-var AWS_ENDPOINT_URL_DYNAMODB='$AWS_ENDPOINT_URL_DYNAMODB' \
    --env-var AWS_REGION='$AWS_REGION' --env-var AWS_ACCESS_KEY_ID='$AWS_ACCESS_KEY_ID' \
    --env-var AWS_SECRET_ACCESS_KEY='$AWS_SECRET_ACCESS_KEY' --env-var RUST_LOG='$RUST_LOG' \
    --env-var CURSOR_SIGNING_KEY='$CURSOR_SIGNING_KEY' ${STRIPE_API_BASE:+--env-var STRIPE_API_BASE='$STRIPE_API_BASE'} \
    --env-var STRIPE_SECRET_KEY='$STRIPE_SECRET_KEY' --env-var STRIPE_WEBHOOK_SECRET='$STRIPE_WEBHOOK_SECRET' \
    --env-var EVENT_BUS_NAME=local-events --env-var AWS_ENDPOINT_URL_EVENTBRIDGE='http://127.0.0.1:$EVENT_BUS_PORT' $*" >/dev/null
  export LAMBDA_INVOKE_URL="http://[::1]:$port"
  wait_for_http "$LAMBDA_INVOKE_URL/" 120 functions
  stack_log "functions (cargo lambda watch) on $LAMBDA_INVOKE_URL"
}

# stack_start_gateway PORT: the local API Gateway stand-in (never deployed), also serving the dashboard. It signs
# and verifies dev tokens with the key in DEV_JWT_KEY_FILE (default under ~/.local/state, never in the repo that
# `cargo lambda watch` watches); `node dev/gateway.mjs --print-token` uses the same file.
stack_start_gateway() {
  local port="$1"
  port_is_free "$port" || { stack_log "port $port is busy (gateway)"; return 1; }
  GATEWAY_PORT="$port" stack_spawn gateway node "$repo_root/dev/gateway.mjs" >/dev/null
  export GATEWAY_URL="http://127.0.0.1:$port"
  wait_for_http "$GATEWAY_URL/dev/config.json" 30 gateway
  stack_log "gateway (dashboard + API) on $GATEWAY_URL"
  if [ -n "${STRIPE_API_BASE:-}" ]; then
    # localstripe's webhook endpoint: this gateway's POST /webhooks/stripe (no JWT; the signature authenticates).
    curl -fsS -o /dev/null -X POST "$STRIPE_API_BASE/_config/webhooks/local" \
      --data-urlencode "url=$GATEWAY_URL/webhooks/stripe" --data-urlencode "secret=$STRIPE_WEBHOOK_SECRET" ||
      { stack_log "registering the webhook endpoint in localstripe failed"; return 1; }
    stack_log "localstripe sends its events to $GATEWAY_URL/webhooks/stripe"
  fi
}

# stack_start_events: after the functions: the table's stream (enabled if off) read from its end, its outbox
# inserts handed to the real publish-events, which puts them on a stand-in bus on EVENT_BUS_PORT; every envelope
# is appended to $EVENTS_LOG (JSON lines) and printed to $STACK_LOG_DIR/events.log.
stack_start_events() {
  port_is_free "$EVENT_BUS_PORT" || { stack_log "port $EVENT_BUS_PORT is busy (event bus)"; return 1; }
  export EVENTS_LOG="$STACK_LOG_DIR/events.jsonl"
  : >"$EVENTS_LOG"
  stack_spawn events node "$repo_root/dev/event-pipeline.mjs" >/dev/null
  local i
  for ((i = 0; i < 150; i++)); do
    grep -q "reading .* from its end" "$STACK_LOG_DIR/events.log" 2>/dev/null && break
    sleep 0.2
  done
  grep -q "reading .* from its end" "$STACK_LOG_DIR/events.log" 2>/dev/null ||
    { stack_log "the event pipeline did not start; its log:"; tail -n 20 "$STACK_LOG_DIR/events.log" >&2; return 1; }
  stack_log "events: stream -> publish-events -> stand-in bus on 127.0.0.1:$EVENT_BUS_PORT (envelopes in $EVENTS_LOG)"
}
