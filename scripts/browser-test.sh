#!/usr/bin/env bash
# Browser tests of the dashboard (the client panel and the agency console): headless Debian Chromium driven by
# playwright-core, through a running dev gateway in front of the seeded functions. Also runs the money and
# gateway unit tests.
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

want=$(node -p "require('./dashboard/package-lock.json').packages['node_modules/playwright-core'].version")
have=$(node -p "try { require('./dashboard/node_modules/playwright-core/package.json').version } catch { '' }")
if [[ $want != "$have" ]]; then
  echo "browser-test: npm ci (playwright-core $want)" >&2
  # The browser comes from Debian: never let an install script fetch one.
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix dashboard --no-audit --no-fund
fi

# One file at a time: the panel and the agency console tests share agency-northwind's prices and
# acct-northwind-coffee's line (each puts back what it changed, but must not see the other's changes meanwhile).
exec node --test --test-concurrency=1 dashboard/tests/
