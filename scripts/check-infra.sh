#!/usr/bin/env bash
# Lints infra/template.yaml (template-vs-code test, sam validate --lint, cfn-lint, checkov) and builds every
# function the way `sam deploy` will ship it (offline, no Docker), then checks each artifact is an arm64 Linux
# `bootstrap`. SKIP_SAM_BUILD=1 stops after the lints (local use; CI never sets it).
#
# Build: scripts/build-functions.sh runs ONE `cargo lambda build --release --arm64 -p <every function>` into
# target/lambda/ (or $CARGO_TARGET_DIR/lambda/): dependencies compile once, the per-binary fat-LTO links run in
# parallel. `sam build` then runs each function's Makefile target (BuildMethod: makefile), which finds the
# build done (a no-op cargo call) and copies the bootstrap: seconds per function.
set -euo pipefail
cd "$(dirname "$0")/.."
export SAM_CLI_TELEMETRY=0

# The pinned versions in scripts/requirements-tools.txt, if any tool is missing; checkov in its own virtualenv.
for tool in sam cfn-lint cargo-lambda; do
  command -v "$tool" >/dev/null 2>&1 || { pip install --quiet -r scripts/requirements-tools.txt; break; }
done
source scripts/install-checkov.sh
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

echo "== template matches code (cargo test -p shared --test it template_matches_code)"
cargo test --quiet -p shared --test it template_matches_code

region=${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}
echo "== sam validate --lint"
sam validate --lint --template-file infra/template.yaml --region "$region"
# Informational findings too (e.g. stateful resources without explicit deletion policies).
cfn-lint --include-checks I --regions "$region" -- infra/template.yaml

echo "== checkov (skips and their reasons: infra/checkov.yaml)"
"$CHECKOV" --config-file infra/checkov.yaml -f infra/template.yaml

if [[ ${SKIP_SAM_BUILD:-} == 1 ]]; then
  echo "== SKIP_SAM_BUILD=1: no release build, no sam build (CI never sets it)"
  exit 0
fi

echo "== release build of every function, once (scripts/build-functions.sh)"
started=$(date +%s)
scripts/build-functions.sh
echo "cargo lambda build took $(($(date +%s) - started)) s"

echo "== sam build (template and options from samconfig.toml; copies the bootstraps built above)"
started=$(date +%s)
sam build
echo "sam build took $(($(date +%s) - started)) s"

echo "== artifacts"
python3 - <<'EOF'
import pathlib, sys, yaml

class CfnLoader(yaml.SafeLoader):
    pass

# Short-form intrinsics (!Ref, !Sub, ...) are irrelevant here; read them as null.
CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)
template = yaml.load(pathlib.Path("infra/template.yaml").read_text(), Loader=CfnLoader)
functions = [name for name, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]
bad = 0
for name in functions:
    path = pathlib.Path(".aws-sam/build") / name / "bootstrap"
    if not path.is_file():
        print(f"{name}: MISSING {path}")
        bad += 1
        continue
    header = path.read_bytes()[:20]
    # ELF magic, 64-bit, little-endian, e_machine 183 = AArch64.
    is_arm64_elf = header[:4] == b"\x7fELF" and header[4] == 2 and header[5] == 1 and int.from_bytes(header[18:20], "little") == 183
    size = path.stat().st_size
    print(f"{name}: {path} {size} bytes ({size / 2**20:.1f} MiB) {'ELF aarch64' if is_arm64_elf else 'NOT an aarch64 ELF'}")
    bad += not is_arm64_elf
sys.exit(1 if bad else 0)
EOF
