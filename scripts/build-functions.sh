#!/usr/bin/env bash
# Builds every function's arm64 release bootstrap in ONE cargo invocation:
#   cargo lambda build --release --arm64 -p <each crate under functions/>
# into target/lambda/<binary>/bootstrap (or $CARGO_TARGET_DIR/lambda/...).
#
# One invocation instead of one per function (SAM's rust-cargolambda builder): the dependencies compile once
# with one feature set, and the fat-LTO links (the bulk of each function's cost, ~1.5-2.5 min of one core)
# run in parallel on every core. When nothing changed it is a ~2 s no-op, so `sam build` calls it from every
# function's Makefile target and only the first call does the work.
set -euo pipefail
cd "$(dirname "$0")/.."

# ONLY_FUNCTIONS="a b" restricts the build to those crates (a quick check of one function; sam build of the
# others then fails on their missing bootstrap).
packages=()
for manifest in functions/*/Cargo.toml; do
  name="$(basename "$(dirname "$manifest")")"
  if [ -z "${ONLY_FUNCTIONS:-}" ] || [[ " $ONLY_FUNCTIONS " == *" $name "* ]]; then
    packages+=(-p "$name")
  fi
done
# A lock, because `sam build --parallel` may start several targets at once (cargo would serialise them anyway).
exec 9>"${TMPDIR:-/tmp}/overage-credits-build-functions.lock"
flock 9
cargo lambda build --release --arm64 "${packages[@]}"
