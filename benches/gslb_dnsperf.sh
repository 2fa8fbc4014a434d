#!/usr/bin/env bash
# GSLB benchmark (issue 20 point 5): dnsperf against sluice's [gslb] server
# and gdnsd with an equivalent configuration, on loopback, in the same run.
#
# Both serve gslb.example.com with a failover name (www: eu then us,
# gdnsd's metafo) and a weighted name (lb: eu 3, us 1, one address per
# answer, gdnsd's weighted), both sites checked by TCP connect to a local
# listener. One UDP I/O thread each (sluice: global.threads = 1; gdnsd:
# udp_threads = 1), pinned to CPU 1; dnsperf pinned to CPU 0. Each round
# loads sluice then gdnsd for DURATION seconds; queries/s is dnsperf's,
# CPU per query is the server's user+system time (from /proc) divided by
# the queries it answered. Medians of ROUNDS rounds are printed.
#
#   benches/gslb_dnsperf.sh [ROUNDS] [DURATION]   (root not needed)
set -euo pipefail
ROUNDS=${1:-3}
DURATION=${2:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SLUICE=${SLUICE:-$ROOT/target/release/sluice}
SLUICE_PORT=15401
GDNSD_PORT=15400
CHECK_PORT=18091
TMP=$(mktemp -d /tmp/gslb-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

for t in dnsperf gdnsd taskset python3; do
  command -v "$t" >/dev/null || { echo "missing $t (scripts/setup.sh installs it)" >&2; exit 1; }
done
[ -x "$SLUICE" ] || { echo "build first: cargo build --release -p sluice" >&2; exit 1; }

# The sites' "VIPs": TCP listeners on loopback for both servers' checks.
python3 - "$CHECK_PORT" >/dev/null 2>&1 <<'PY' &
import socket, sys, threading
port = int(sys.argv[1])
def serve(addr):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
ts = [threading.Thread(target=serve, args=(a,), daemon=True) for a in ("127.0.0.11", "127.0.0.12")]
[t.start() for t in ts]; [t.join() for t in ts]
PY
PIDS+=($!)

# --- sluice ---
cat >"$TMP/sluice.toml" <<TOML
[global]
admin = "127.0.0.1:19931"
threads = 1

[health_check.web]
type = "tcp"
port = $CHECK_PORT
interval = "2s"
timeout = "1s"
initial_state = "up"

[gslb]
listen = ["127.0.0.1:$SLUICE_PORT"]
zone = "gslb.example.com"
nameservers = ["ns1.example.com"]
hostmaster = "hostmaster.example.com"
rate_limit = 0

[[gslb.site]]
name = "eu"
addresses = ["127.0.0.11"]
health_check = "web"

[[gslb.site]]
name = "us"
addresses = ["127.0.0.12"]
health_check = "web"

[[gslb.name]]
name = "www"
policy = "failover"
sites = ["eu", "us"]

[[gslb.name]]
name = "lb"
policy = "weighted"
sites = ["eu", "us"]
weights = [3, 1]
TOML

# --- gdnsd ---
mkdir -p "$TMP/gdnsd/zones" "$TMP/gdnsd/run" "$TMP/gdnsd/state"
cat >"$TMP/gdnsd/config" <<CONF
options => {
  listen => [ 127.0.0.1:$GDNSD_PORT ]
  udp_threads => 1
  tcp_threads => 1
  run_dir => $TMP/gdnsd/run
  state_dir => $TMP/gdnsd/state
}
service_types => {
  web => { plugin => tcp_connect, port => $CHECK_PORT, interval => 2, timeout => 1 }
}
plugins => {
  metafo => {
    resources => {
      www => {
        service_types => [ web ]
        datacenters => [ eu, us ]
        dcmap => { eu => 127.0.0.11, us => 127.0.0.12 }
      }
    }
  }
  weighted => {
    service_types => web
    multi => false
    lb => { eu => [ 127.0.0.11, 3 ], us => [ 127.0.0.12, 1 ] }
  }
}
CONF
cat >"$TMP/gdnsd/zones/gslb.example.com" <<'ZONE'
$TTL 30
@   SOA ns1.example.com. hostmaster.example.com. 1 3600 600 86400 60
@   NS  ns1.example.com.
www 30 DYNA metafo!www
lb  30 DYNA weighted!lb
ZONE

gdnsd -c "$TMP/gdnsd" checkconf >/dev/null 2>&1 || { gdnsd -c "$TMP/gdnsd" checkconf; exit 1; }
taskset -c 1 gdnsd -c "$TMP/gdnsd" start >"$TMP/gdnsd.log" 2>&1 &
PIDS+=($!); GDNSD_PID=$!
taskset -c 1 "$SLUICE" run -c "$TMP/sluice.toml" >"$TMP/sluice.log" 2>&1 &
PIDS+=($!); SLUICE_PID=$!

printf 'www.gslb.example.com A\nlb.gslb.example.com A\n' >"$TMP/queries"
for port in $SLUICE_PORT $GDNSD_PORT; do
  for _ in $(seq 50); do
    dig +short +tries=1 +time=1 @127.0.0.1 -p "$port" www.gslb.example.com 2>/dev/null | grep -q 127.0.0.11 && break
    sleep 0.2
  done
  dig +short @127.0.0.1 -p "$port" www.gslb.example.com | grep -q 127.0.0.11 \
    || { echo "server on port $port does not answer"; cat "$TMP"/*.log; exit 1; }
done

HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# One run: prints "qps us_per_query".
one() {
  local pid=$1 port=$2 before after out qps done_q
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$TMP/queries" -l "$DURATION" -c 4 -q 200 2>&1)
  after=$(cpu_ticks "$pid")
  qps=$(awk '/Queries per second:/ {print $4}' <<<"$out")
  done_q=$(awk '/Queries completed:/ {print $3}' <<<"$out")
  awk -v t=$((after - before)) -v hz="$HZ" -v n="$done_q" -v q="$qps" \
    'BEGIN { printf "%.0f %.2f\n", q, (t / hz) * 1e6 / n }'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: >"$TMP/sluice.res"; : >"$TMP/gdnsd.res"
for r in $(seq "$ROUNDS"); do
  s=$(one "$SLUICE_PID" "$SLUICE_PORT"); echo "$s" >>"$TMP/sluice.res"
  g=$(one "$GDNSD_PID" "$GDNSD_PORT"); echo "$g" >>"$TMP/gdnsd.res"
  echo "round $r: sluice $s | gdnsd $g  (queries/s, CPU µs/query)"
done
sq=$(cut -d' ' -f1 "$TMP/sluice.res" | median); sc=$(cut -d' ' -f2 "$TMP/sluice.res" | median)
gq=$(cut -d' ' -f1 "$TMP/gdnsd.res" | median); gc=$(cut -d' ' -f2 "$TMP/gdnsd.res" | median)
echo
echo "| server | queries/s (median of $ROUNDS) | CPU µs per query (median) |"
echo "|---|---|---|"
echo "| sluice $(git -C "$ROOT" rev-parse --short HEAD) | $sq | $sc |"
echo "| gdnsd $(dpkg-query -W -f='${Version}' gdnsd) | $gq | $gc |"
