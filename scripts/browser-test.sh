#!/usr/bin/env bash
# Browser tests of the dashboard (the client panel and the agency console): headless Debian Chromium driven by
# playwright-core, through a running dev gateway in front of the seeded functions. First type-checks the dashboard
# (tsc) against the types generated from infra/openapi.yaml; also runs the unit tests of dashboard/tests/.
#
# Expects in the environment (scripts/local-stack.sh sets them up):
#   GATEWAY_URL                 the dev gateway, e.g. http://127.0.0.1:3000 (node dev/gateway.mjs)
#   TABLE_NAME                  the seeded table the functions use
#   AWS_ENDPOINT_URL_DYNAMODB   its local engine (the test changes one price there and restores the seeds)
# Optional: LAMBDA_INVOKE_URL (cargo lambda watch, set by local-stack.sh: the agency console's test spends a
# client's credits with consume-credits for a real credits_already_used), CHROMIUM_PATH (default
# /usr/bin/chromium), SEED_LOADER (a prebuilt seed-loader binary instead of `cargo run -p seed-loader`).
# Screenshots: .artifacts/dashboard/*.png
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for name in GATEWAY_URL TABLE_NAME AWS_ENDPOINT_URL_DYNAMODB; do
  [[ -n ${!name:-} ]] || missing+=("$name")
done
if ((${#missing[@]})); then
  echo "browser-test: set ${missing[*]} (start the local stack first: scripts/dev.sh or scripts/test.sh)" >&2
  exit 2
fi

chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [[ ! -x $chromium ]]; then
  echo "browser-test: installing Debian's chromium (downloading a browser through Playwright does not work here)" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
echo "browser-test: $("$chromium" --version 2>/dev/null || echo "chromium at $chromium")" >&2

# The dashboard's npm dependencies as dashboard/package-lock.json pins them (playwright-core, openapi-typescript,
# typescript); the browser comes from Debian: never let an install script fetch one.
if ! node -e '
  const lock = require("./dashboard/package-lock.json").packages;
  for (const [path, { version, optional }] of Object.entries(lock)) {
    if (!path || optional) continue; // an optional package may not exist for this platform
    let have = "";
    try { have = require(`./dashboard/${path}/package.json`).version } catch {}
    if (have !== version) process.exit(1);
  }' 2>/dev/null; then
  echo "browser-test: npm ci in dashboard" >&2
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix dashboard --no-audit --no-fund
fi

# The dashboard against the contract's types (dashboard/tsconfig.json, types/openapi.d.ts; its staleness is
# tests/types.test.mjs): a contract change that breaks the dashboard fails here, before a browser starts.
started=$SECONDS
echo "browser-test: tsc --noEmit -p dashboard" >&2
node dashboard/node_modules/typescript/bin/tsc -p dashboard
echo "browser-test: tsc passed ($((SECONDS - started)) s)" >&2

# One file at a time: the panel and the agency console tests share agency-northwind's prices and
# acct-northwind-coffee's line (each puts back what it changed, but must not see the other's changes meanwhile).
exec node --test --test-concurrency=1 dashboard/tests/
