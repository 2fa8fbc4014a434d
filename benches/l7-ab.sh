#!/usr/bin/env bash
# Two builds of sluice compared in the LB-bound L7 run (BENCHMARKS.md §3,
# "Eighth sitting"): `sluice lab bmt` with every proxy held to 25 % of one
# CPU, six runs alternating the builds old, new, new, old, old, new (a
# steady drift of the machine falls on both alike), then a summary of the
# `proxy` and `proxy-tcp` cells: req/s, the ratio to HAProxy measured in
# the same run, the median of the per-round ratios, LB CPU per request.
#
# Usage: benches/l7-ab.sh OLD_BINARY NEW_BINARY
#   e.g. git worktree add /tmp/base c8da5b1 && (cd /tmp/base && cargo build --release -p sluice)
#        benches/l7-ab.sh /tmp/base/target/release/sluice target/release/sluice
# Summary of an earlier batch: benches/l7-ab.sh --summary STAMP
#
# Runtime: about 20 minutes (six runs of about 3 min 15 s). Must run as
# root (network namespaces); every run tears its lab down, also on Ctrl-C.
set -uo pipefail
cd "$(dirname "$0")/.."

summary() {
  python3 - "$1" <<'PY'
import glob, json, statistics, sys
stamp = sys.argv[1]
runs = sorted(r for r in glob.glob(f"bench-results/{stamp}-ab-*") if not r.endswith(".log"))
per = {}
for r in runs:
    build = r.rsplit("-", 1)[1]
    try:
        d = json.load(open(r + "/bmt.json"))
    except OSError as e:
        print(f"{r}: no bmt.json ({e}); run skipped in the summary", file=sys.stderr)
        continue
    for c in d["cells"]:
        if c["mode"] not in ("proxy", "proxy-tcp"):
            continue
        v = per.setdefault((build, c["series"]), {"rounds": [], "ratio": [], "rps": [], "cpu": []})
        v["rounds"] += c.get("rps_vs_haproxy_per_rep") or []
        v["ratio"].append(c["rps_vs_haproxy"])
        v["rps"].append(c["requests_per_sec"])
        v["cpu"].append(c["lb_cpu_us_per_req"])
series = ["proxy t1", "proxy t2", "proxy-tcp t1", "proxy-tcp t2"]
print("| series | build | req/s per run | ratio vs HAProxy per run | per-round median (n) | LB µs/req per run |")
print("|---|---|---|---|---|---|")
for s in series:
    for b in ("old", "new"):
        v = per.get((b, s))
        if v and v["rounds"]:
            print(f"| {s} | {b} | {' · '.join(f'{x/1000:.1f}k' for x in v['rps'])} | "
                  f"{' · '.join(f'{x:.2f}' for x in v['ratio'])} | "
                  f"{statistics.median(v['rounds']):.2f} ({len(v['rounds'])}) | "
                  f"{' · '.join(f'{x:.1f}' for x in v['cpu'])} |")
for s in series:
    o, n = per.get(("old", s)), per.get(("new", s))
    if o and n and o["rounds"] and n["rounds"]:
        mo, mn = statistics.median(o["rounds"]), statistics.median(n["rounds"])
        print(f"{s}: per-round median old {mo:.3f} new {mn:.3f}, new/old {mn / mo:.3f}; "
              f"LB µs/req median old {statistics.median(o['cpu']):.1f} new {statistics.median(n['cpu']):.1f}")
PY
}

if [ "${1:-}" = "--summary" ] && [ $# -eq 2 ]; then
  summary "$2"
  exit 0
fi
if [ $# -ne 2 ] || [ ! -x "$1" ] || [ ! -x "$2" ]; then
  sed -n '/^# Usage:/,/^# Summary/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "l7-ab: must run as root (the lab creates network namespaces)" >&2
  exit 1
fi
bash scripts/setup.sh

old="$1" new="$2"
stamp="$(date -u +%Y%m%d-%H%M%S)"
status=0
i=0
for build in old new new old old new; do
  i=$((i + 1))
  bin="$old"; [ "$build" = new ] && bin="$new"
  out="bench-results/${stamp}-ab-$i-$build"
  echo "l7-ab: run $i of 6 ($build) -> $out" >&2
  "$bin" lab bmt --modes proxy,haproxy,proxy-tcp,haproxy-tcp --threads 1,2 --concurrency 100 \
    --reps 3 --keepalive --duration 8s --lb-cpu-pct 25 --out "$out" > "$out.log" 2>&1 || {
    echo "l7-ab: run $i failed (see $out.log)" >&2
    status=1
  }
done
summary "$stamp"
exit "$status"
