#!/usr/bin/env bash
# Installs what the local stack and the tests need, when missing: cargo-lambda, SAM CLI, cfn-lint and
# schemathesis (PyPI), localstripe (PyPI, own virtualenv), the dynoxide binary (crates.io), and the local Step Functions interpreter (npm, in
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

# localstripe in its own virtualenv (scripts/requirements-localstripe.txt): the collection tests start it
# themselves (testkit::stripe) through scripts/localstripe-serve.py, which binds 127.0.0.1 only.
localstripe_venv="$tools_dir/localstripe-venv"
localstripe_pin="$(grep -E '^localstripe==' "$repo_root/scripts/requirements-localstripe.txt")"
if ! "$localstripe_venv/bin/python" -m pip show localstripe 2>/dev/null | grep -qx "Version: ${localstripe_pin#localstripe==}"; then
  echo "install-tools: installing $localstripe_pin into $localstripe_venv..." >&2
  python3 -m venv "$localstripe_venv"
  if ! "$localstripe_venv/bin/pip" install --quiet --disable-pip-version-check -r "$repo_root/scripts/requirements-localstripe.txt" >/tmp/overage-pip-localstripe.log 2>&1; then
    cat /tmp/overage-pip-localstripe.log >&2
    echo "install-tools: localstripe install failed" >&2
    exit 1
  fi
fi
export LOCALSTRIPE_PYTHON="$localstripe_venv/bin/python"

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
