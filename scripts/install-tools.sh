#!/usr/bin/env bash
# Installs, when missing, what a command needs, and sets PATH. Source it with the command's name:
#   source scripts/install-tools.sh dev    # scripts/dev.sh: cargo-lambda (PyPI), localstripe (PyPI, own
#                                          # virtualenv), the dynoxide binary (crates.io), the dev gateway's npm
#                                          # dependency (dev/package-lock.json)
#   source scripts/install-tools.sh test   # scripts/test.sh, bench.sh (the default): the above, plus SAM CLI,
#                                          # cfn-lint, schemathesis and PyYAML (PyPI), checkov (own virtualenv), the
#                                          # local Step Functions interpreter (tools/state-machine/) and the
#                                          # dashboard's test dependencies (dashboard/package-lock.json)
# Chromium for the browser tests comes from Debian, installed by scripts/browser-test.sh.
# Tools go to ~/.cache/overage-credits/tools (override with OVERAGE_TOOLS_DIR) so clones share them; the PyPI tools
# of requirements-*.txt go to the current Python environment.
set -euo pipefail

# Sourced without arguments, "$1" is the caller's own first argument (bench.sh passes its flags): only these words
# choose a set.
case "${1:-}" in
  dev) install_set=dev ;;
  *) install_set=test ;;
esac

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${OVERAGE_TOOLS_DIR:-$HOME/.cache/overage-credits/tools}"
dynoxide_version="3.2.0"
export PATH="$tools_dir/bin:$HOME/.cargo/bin:$PATH"

requirements="$repo_root/scripts/requirements-dev.txt"
[[ $install_set == dev ]] || requirements="$repo_root/scripts/requirements-tools.txt"
if ! python3 -m pip install --quiet --disable-pip-version-check -r "$requirements" >/tmp/overage-pip.log 2>&1; then
  cat /tmp/overage-pip.log >&2
  echo "install-tools: pip install failed" >&2
  exit 1
fi
hash -r

# localstripe in its own virtualenv (scripts/requirements-localstripe.txt): the local stack and the collection tests
# (testkit::stripe) start it through scripts/localstripe-serve.py, which binds 127.0.0.1 only.
localstripe_venv="$tools_dir/localstripe-venv"
localstripe_pin="$(grep -E '^localstripe==' "$repo_root/scripts/requirements-localstripe.txt")"
# (grep without -q: under pipefail, grep -q leaving early makes the writer's SIGPIPE fail the check.)
if ! "$localstripe_venv/bin/python" -m pip show localstripe 2>/dev/null | grep -x "Version: ${localstripe_pin#localstripe==}" >/dev/null; then
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
if ! command -v dynoxide >/dev/null || ! cargo install --list --root "$tools_dir" | grep "^dynoxide-rs v$dynoxide_version" >/dev/null; then
  echo "install-tools: building dynoxide $dynoxide_version (about 2.5 minutes, once)..." >&2
  cargo install dynoxide-rs --version "$dynoxide_version" --locked --quiet \
    --no-default-features --features native-sqlite,http-server,cli --root "$tools_dir"
fi

# install_npm DIR: `npm ci` in DIR unless every package its lockfile pins is installed at that version. No install
# script may fetch a browser (playwright-core drives Debian's Chromium).
install_npm() {
  local dir="$repo_root/$1"
  if ! node -e '
    const dir = process.argv[1];
    const lock = require(`${dir}/package-lock.json`).packages;
    for (const [path, { version, optional }] of Object.entries(lock)) {
      if (!path || optional) continue; // an optional package may not exist for this platform
      let have = "";
      try { have = require(`${dir}/${path}/package.json`).version } catch {}
      if (have !== version) process.exit(1);
    }' "$dir" 2>/dev/null; then
    echo "install-tools: npm ci in $1..." >&2
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
  fi
}

# The dev gateway reads infra/template.yaml with the `yaml` package.
install_npm dev

if [[ $install_set == test ]]; then
  # checkov (about 2 minutes, once) is only for the infrastructure checks.
  source "$repo_root/scripts/install-checkov.sh"
  # The local Step Functions interpreter for infra/billing-state-machine.asl.json (scripts/billing-state-machine.mjs).
  install_npm tools/state-machine
  # The dashboard's tests: playwright-core, and the types from the contract (openapi-typescript, typescript).
  install_npm dashboard
fi
