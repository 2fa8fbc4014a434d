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

step() { printf '\n== %s ==\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check || { echo "test: formatting differs (run cargo fmt)"; exit 1; }

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings || { echo "test: clippy failed"; exit 1; }

step "cargo test --workspace"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# One test binary at a time keeps the lab tests' CPU use predictable on a
# 2-core machine; tests inside a binary still run in parallel.
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# Leftovers are failures too: every lab and test must tear down.
leftover="$(ip netns list 2>/dev/null | grep -E '^sl-' || true)"
if [ -n "$leftover" ]; then
  echo "test: network namespaces left behind:"; echo "$leftover"
  status=1
fi

passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$log")
echo
echo "sluice tests: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
