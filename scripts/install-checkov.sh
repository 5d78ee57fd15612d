#!/usr/bin/env bash
# Installs the pinned checkov (scripts/requirements-checkov.txt) into its own virtualenv when missing, and exports
# CHECKOV (its path). Sourced by install-tools.sh and check-infra.sh.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${OVERAGE_TOOLS_DIR:-$HOME/.cache/overage-credits/tools}"
# checkov in its own virtualenv: it pins boto3 exactly, which conflicts with aws-sam-cli's (requirements-checkov.txt).
checkov_venv="$tools_dir/checkov-venv"
checkov_pin="$(grep -E '^checkov==' "$repo_root/scripts/requirements-checkov.txt")"
if ! "$checkov_venv/bin/checkov" --version 2>/dev/null | grep -qx "${checkov_pin#checkov==}"; then
  echo "install-tools: installing $checkov_pin into $checkov_venv (about 2 minutes, once)..." >&2
  python3 -m venv "$checkov_venv"
  if ! "$checkov_venv/bin/pip" install --quiet --disable-pip-version-check -r "$repo_root/scripts/requirements-checkov.txt" >/tmp/overage-pip-checkov.log 2>&1; then
    cat /tmp/overage-pip-checkov.log >&2
    echo "install-tools: checkov install failed" >&2
    exit 1
  fi
fi
export CHECKOV="$checkov_venv/bin/checkov"
