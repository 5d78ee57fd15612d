#!/usr/bin/env bash
# `make bench`: performance figures for the purchase and pricing paths, billing and collection throughput. It reports, it does not judge: it exits
# 0 even when a target is missed, and non-zero only when the bench itself could not build or measure.
#  1. Installs missing tools (scripts/install-tools.sh: cargo-lambda and zig among them) and the aarch64 target.
#  2. Release builds with the workspace profile (lto, codegen-units=1, strip), one after another (2 cores):
#     the x86_64 bootstraps of purchase-credits, get-pricing and the echo floor; the bench; then the arm64
#     bootstraps (cargo lambda) of those whose target/lambda or .aws-sam/build copy is older than the sources.
#  3. Runs the bench, which prints the figures and writes bench/RESULTS.md.
# Arguments go to the bench, e.g. `scripts/bench.sh --quick` (small counts, writes no file), or
# `cargo run --release -p bench -- --billing` for the billing throughput alone (no function binaries needed),
# `-- --consumption` for warm consumption alone, `-- --cold-start` for the cold starts alone, `-- --collection` for
# collection through a Stripe-like server alone (no function binaries needed), `-- --cold-start-stripe` for the
# cold starts of collect-payments and stripe-webhook (build them first: cargo build --release -p collect-payments
# -p stripe-webhook -p echo-lambda).
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/install-tools.sh test
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

echo "==> release build, x86_64: purchase-credits, get-pricing, echo-lambda"
cargo build --release -p purchase-credits -p get-pricing -p echo-lambda
echo "==> release build: bench"
cargo build --release -p bench

stale_list="$(target/release/bench --stale-arm64)"
read -ra stale <<<"$stale_list"
if [ "${#stale[@]}" -gt 0 ]; then
  echo "==> release build, arm64 (cargo lambda): ${stale[*]}"
  bins=()
  for bin in "${stale[@]}"; do bins+=(--bin "$bin"); done
  cargo lambda build --release --arm64 "${bins[@]}"
fi

echo "==> bench"
cargo run --release -p bench -- "$@"
