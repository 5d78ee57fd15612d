#!/usr/bin/env bash
# Installs what the local stack and the tests need, when missing: cargo-lambda, SAM CLI, cfn-lint and
# schemathesis (PyPI), the dynoxide binary (crates.io), and the local Step Functions interpreter (npm, in
# tools/state-machine/). Source it to get PATH set up:
#   source scripts/install-tools.sh
# Tools go to ~/.cache/overage-credits/tools (override with OVERAGE_TOOLS_DIR) so clones share them.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${OVERAGE_TOOLS_DIR:-$HOME/.cache/overage-credits/tools}"
dynoxide_version="3.2.0"
export PATH="$tools_dir/bin:$HOME/.cargo/bin:$PATH"

if ! python3 -m pip install --quiet --disable-pip-version-check -r "$repo_root/scripts/requirements-tools.txt" >/tmp/overage-pip.log 2>&1; then
  cat /tmp/overage-pip.log >&2
  echo "install-tools: pip install failed" >&2
  exit 1
fi
hash -r

source "$repo_root/scripts/install-checkov.sh"

# (The binary reports its own version, not the crate's, so ask cargo what is installed.)
if ! command -v dynoxide >/dev/null || ! cargo install --list --root "$tools_dir" | grep -q "^dynoxide-rs v$dynoxide_version"; then
  echo "install-tools: building dynoxide $dynoxide_version (about 2.5 minutes, once)..." >&2
  cargo install dynoxide-rs --version "$dynoxide_version" --locked --quiet \
    --no-default-features --features native-sqlite,http-server,cli --root "$tools_dir"
fi

# The local Step Functions interpreter for infra/billing-state-machine.asl.json (scripts/billing-state-machine.mjs):
# npm aws-local-stepfunctions as pinned in tools/state-machine/package-lock.json.
sfn_want=$(node -p "require('$repo_root/tools/state-machine/package-lock.json').packages['node_modules/aws-local-stepfunctions'].version")
sfn_have=$(node -p "try { require('$repo_root/tools/state-machine/node_modules/aws-local-stepfunctions/package.json').version } catch { '' }")
if [[ $sfn_want != "$sfn_have" ]]; then
  echo "install-tools: npm ci in tools/state-machine (aws-local-stepfunctions $sfn_want)..." >&2
  npm ci --prefix "$repo_root/tools/state-machine" --no-audit --no-fund --loglevel=error >&2
fi
