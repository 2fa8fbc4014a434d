#!/usr/bin/env bash
# Issue 4, item 8: sluice's L7 proxy side by side with HAProxy, in the
# namespace lab. Both get equivalent configs: 3 nginx reals, roundrobin, a
# 5 KiB file, LB threads 1 and 2, `mode http` (proxy vs haproxy) and
# `mode tcp` (proxy-tcp vs haproxy-tcp). Two loads, concurrency 100,
# 3 repetitions per cell (medians):
#
#   keepalive  `sluice bench` keep-alive (wrk-style, 2 client threads),
#              8 s per repetition, plus one `wrk -t2 -c100 -d10s --latency`
#              cross-check per cell;
#   newconn    `sluice bench` in ab mode (a new TCP connection per request,
#              1 client thread), 20000 requests per repetition;
#   lbbound    keepalive again, 8 s per repetition, with every proxy held to
#              LB_CPU_PCT percent of one CPU by a CPU cgroup
#              (`--lb-cpu-pct`): the LB, not the client and the three nginx
#              sharing the two vCPUs, is then the bottleneck, so req/s
#              compares what each LB serves per unit of CPU.
#
# Runtime: about 5 minutes for keepalive (8 LB configurations × (3 × 8 s +
# 10 s of wrk) plus start-ups), 2 minutes for newconn (about 3–4 s per
# repetition at 5–7k req/s) and 4 minutes for lbbound (8 × 3 × 8 s) on the
# 2-vCPU development machine, plus the
# release build (minutes the first time, seconds after). Bounded: every run
# has a duration or a request count and `sluice lab bmt` caps both.
#
# Outputs: bench-results/<UTC stamp>-keepalive/, -newconn/ and -lbbound/ (bmt.md,
# bmt.json with every repetition, bmt.svg, bmt.png); both tables are printed
# at the end. Each bmt.md ends with the "sluice vs HAProxy (issue 4 targets)"
# table. The lab is torn down on exit, also on Ctrl-C.
#
# Must run as root (network namespaces). Extra arguments go to both
# `sluice lab bmt` runs, e.g. `benches/l7-vs-haproxy.sh --reps 5`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "l7-vs-haproxy: must run as root (the lab creates network namespaces)" >&2
  exit 1
fi

# Installs HAProxy, nginx and wrk from Debian when missing (idempotent).
bash scripts/setup.sh

echo "l7-vs-haproxy: building the release binary (minutes the first time)" >&2
cargo build --release --quiet -p sluice --bin sluice

stamp="$(date -u +%Y%m%d-%H%M%S)"
# The CPU budget of each proxy in the LB-bound run, in percent of one CPU:
# about half of what either proxy uses unthrottled at 100 keep-alive
# connections here, so both are throttled throughout.
LB_CPU_PCT=25
common=(--modes proxy,haproxy,proxy-tcp,haproxy-tcp --threads 1,2 --concurrency 100 --reps 3)
status=0

echo "l7-vs-haproxy: keep-alive run (about 5 minutes)" >&2
./target/release/sluice lab bmt "${common[@]}" --keepalive --duration 8s --wrk 10s \
  --out "bench-results/${stamp}-keepalive" "$@" >/dev/null || status=$?

echo "l7-vs-haproxy: new-connection-per-request run (about 2 minutes)" >&2
./target/release/sluice lab bmt "${common[@]}" --requests 20000 \
  --out "bench-results/${stamp}-newconn" "$@" >/dev/null || status=$?

echo "l7-vs-haproxy: LB-bound keep-alive run, proxies held to ${LB_CPU_PCT}% of a CPU (about 4 minutes)" >&2
./target/release/sluice lab bmt "${common[@]}" --keepalive --duration 8s --lb-cpu-pct "$LB_CPU_PCT" \
  --out "bench-results/${stamp}-lbbound" "$@" >/dev/null || status=$?

for run in keepalive newconn lbbound; do
  md="bench-results/${stamp}-${run}/bmt.md"
  echo
  echo "==================== ${run} (${md}) ===================="
  if [ -f "$md" ]; then
    cat "$md"
  else
    echo "(no results: the run failed before writing them)"
  fi
done
exit "$status"
