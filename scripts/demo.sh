#!/usr/bin/env bash
# The sluice demo: set-up (idempotent), a release build, then the seed
# study's benchmark in the namespace lab (`sluice lab bmt --quick`: the
# direct baseline, sluice's proxy, HAProxy and sluice's L4 modes; what is not
# available yet is listed as such, never faked). Prints the table and where
# the chart is. Safe to re-run: every run writes a new results directory and
# the lab is torn down on exit, also on Ctrl-C.
#
# Must run as root (network namespaces, XDP). Extra arguments go to
# `sluice lab bmt`, e.g. `scripts/demo.sh --modes direct,haproxy,dr`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: must run as root (the lab creates network namespaces and attaches XDP programs)" >&2
  exit 1
fi

bash scripts/setup.sh

echo "demo: building the release binary (a few minutes the first time)" >&2
cargo build --release --quiet -p sluice --bin sluice

out="bench-results/demo-$(date -u +%Y%m%d-%H%M%S)"
echo "demo: running sluice lab bmt --quick (about a minute)" >&2
status=0
./target/release/sluice lab bmt --quick --out "$out" "$@" || status=$?

echo
if [ -f "$out/bmt.md" ]; then
  echo "demo: results in $out/ (bmt.md, bmt.json); chart: $out/bmt.png and $out/bmt.svg"
fi
exit "$status"
