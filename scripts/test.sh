#!/usr/bin/env bash
# The whole test suite, as CI runs it: set-up (idempotent), format and lint
# gates, then every test of the workspace, including the root-only ones
# (XDP attach, BPF_PROG_TEST_RUN golden table, network-namespace lab).
#
# Must run as root: the kernel-facing tests need CAP_BPF and CAP_NET_ADMIN
# and fail (not skip) without them.
set -uo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh || { echo "test: set-up failed" >&2; exit 1; }

# CI builds from a clean clone: incremental caches would only cost disk
# (gigabytes) and time.
export CARGO_INCREMENTAL=0

step() { printf '\n== %s ==\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check || { echo "test: formatting differs (run cargo fmt)"; exit 1; }

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings || { echo "test: clippy failed"; exit 1; }

step "cargo test --workspace"
log="$(mktemp)"
fuzz_log=""
trap 'rm -f "$log" "$fuzz_log"' EXIT
# One test binary at a time keeps the lab tests' CPU use predictable on a
# 2-core machine; tests inside a binary still run in parallel.
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

step "fuzz targets (brief)"
# Every fuzz target: its seeds and regressions replayed, then 20 s of
# fuzzing (benches/fuzz.sh). Each target counts as one test in the tally
# below; a crash fails the suite.
fuzz_log="$(mktemp)"
bash benches/fuzz.sh --brief 20 2>&1 | tee "$fuzz_log"
fuzz_status=${PIPESTATUS[0]}
fuzz_passed=$(grep -cE '^\| .* \| 0 crashes \|$' "$fuzz_log" || true)
fuzz_failed=$(grep -cE '^\| .* \| (CRASH|crash)' "$fuzz_log" || true)
if [ "$fuzz_status" -ne 0 ]; then
  echo "test: fuzz targets failed (see above; artifacts under fuzz/artifacts/)"
  status=1
  # A failure before any target ran (the build) still counts once.
  [ "$fuzz_failed" -eq 0 ] && fuzz_failed=1
fi

# Leftovers are failures too: every lab and test must tear down.
leftover="$(ip netns list 2>/dev/null | grep -E '^sl-' || true)"
if [ -n "$leftover" ]; then
  echo "test: network namespaces left behind:"; echo "$leftover"
  status=1
fi

passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$log")
passed=$(( ${passed:-0} + fuzz_passed ))
failed=$(( ${failed:-0} + fuzz_failed ))
echo
echo "sluice tests: ${passed} passed, ${failed} failed"
exit "$status"
