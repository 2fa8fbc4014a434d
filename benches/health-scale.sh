#!/usr/bin/env bash
# Issue 5, item 6: 1,000 TCP checks at a 1 s interval; the checker's CPU
# and the spread of its fire times. Two set-ups, REPS runs each (median):
#
#   lab       the checker in namespace sl-hs-chk, the real (a listener
#             thread of the same process, moved there with setns) in
#             sl-hs-real, over a veth pair. Both veth ends run their
#             receive path in threaded NAPI (GRO on, TSO/GSO off, so that
#             TCP frames take the NAPI path), so the real's kernel work
#             runs on the real side's NAPI thread, as it would on another
#             machine, and the checker host's receive work is measured on
#             its own NAPI thread instead of vanishing into the checker's.
#   loopback  checker and listener on 127.0.0.1: the kernel work of both
#             ends of each handshake is charged to the checker's thread.
#
# Reported per run: the checker's own CPU (utime + stime of the checker's
# threads), its host's receive path (the checker-side NAPI thread), and the
# real side's (listener thread and NAPI thread, not the checker's cost).
#
# Runtime: 2 set-ups × REPS (3) × SECONDS (20 s) = 2 minutes, plus the
# release build. Namespaces are removed on exit, also on Ctrl-C. Root only.
#
# Usage: benches/health-scale.sh [TARGETS=1000] [SECONDS=20] [REPS=3]
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS="${1:-1000}"
SECONDS_PER_RUN="${2:-20}"
REPS="${3:-3}"
CHK=sl-hs-chk
REAL=sl-hs-real
CHK_IP=10.250.7.1
REAL_IP=10.250.7.2

if [ "$(id -u)" -ne 0 ]; then
  echo "health-scale: must run as root (network namespaces)" >&2
  exit 1
fi

cleanup() {
  ip netns del "$CHK" 2>/dev/null || true
  ip netns del "$REAL" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "health-scale: building the example (release)" >&2
cargo build --release --quiet -p sluice-health --example scale
BIN=./target/release/examples/scale

# CPU seconds (utime + stime) of the kernel thread named $1.
kthread_cpu() {
  local pid
  pid="$(pgrep -x "$1" | head -n1)"
  if [ -z "$pid" ]; then echo 0; return; fi
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat"
}

lab_up() {
  cleanup
  ip netns add "$CHK"
  ip netns add "$REAL"
  ip -n "$CHK" link add v-chk type veth peer name v-real netns "$REAL"
  ip -n "$CHK" addr add "$CHK_IP/24" dev v-chk
  ip -n "$REAL" addr add "$REAL_IP/24" dev v-real
  for pair in "$CHK v-chk" "$REAL v-real"; do
    set -- $pair
    ip -n "$1" link set lo up
    ethtool_out="$(ip netns exec "$1" ethtool -K "$2" gro on tso off gso off 2>&1)" || {
      echo "health-scale: ethtool failed in $1: $ethtool_out" >&2
      exit 1
    }
    ip -n "$1" link set "$2" up
    ip netns exec "$1" sh -c "echo 1 > /sys/class/net/$2/threaded"
  done
}

# Prints "checker% host_rx% real_listener_s real_napi_s spread_stddev checks_per_s failures".
run_once() {
  local mode="$1" out napi_chk napi_real
  if [ "$mode" = lab ]; then
    lab_up
    out="$(ip netns exec "$CHK" "$BIN" "$TARGETS" "$SECONDS_PER_RUN" "$REAL" "$REAL_IP")"
    # NAPI threads are named napi/<dev>-<id>; look them up by prefix.
    napi_chk="$(kthread_cpu "$(ps -eo comm= | grep -m1 '^napi/v-chk-' || echo none)")"
    napi_real="$(kthread_cpu "$(ps -eo comm= | grep -m1 '^napi/v-real-' || echo none)")"
    cleanup
  else
    out="$("$BIN" "$TARGETS" "$SECONDS_PER_RUN")"
    napi_chk=0
    napi_real=0
  fi
  echo "$out" >&2
  awk -v nc="$napi_chk" -v nr="$napi_real" -v secs="$SECONDS_PER_RUN" '
    /^checks / { cps = $3; gsub(/[^0-9.]/, "", cps); fail = $5; gsub(/[^0-9]/, "", fail) }
    /^checker CPU/ { cpu = $3; gsub(/s/, "", cpu) }
    /^listener CPU/ { lst = $3; gsub(/s/, "", lst) }
    /^fire-time spread/ { sd = $(NF-2) }
    END { printf "%.2f %.2f %.2f %.2f %s %s %s\n", 100 * cpu / secs, 100 * nc / secs, lst, nr, sd, cps, fail }
  ' <<<"$out"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf '| set-up | run | checks/s | failures | checker CPU %% | + host receive (NAPI) %% | all-in on the checker host %% | real side: listener s / NAPI s | fire spread: stddev of probes per 100 ms (mean 100) |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
for mode in lab loopback; do
  results=()
  for rep in $(seq 1 "$REPS"); do
    read -r cpu rx lst nr sd cps fail < <(run_once "$mode")
    allin="$(awk -v a="$cpu" -v b="$rx" 'BEGIN { printf "%.2f", a + b }')"
    results+=("$cpu $rx $allin")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |\n' \
      "$mode" "$rep" "$cps" "$fail" "$cpu" "$rx" "$allin" "$lst" "$nr" "$sd"
  done
  med_cpu="$(printf '%s\n' "${results[@]}" | awk '{ print $1 }' | median)"
  med_rx="$(printf '%s\n' "${results[@]}" | awk '{ print $2 }' | median)"
  med_all="$(printf '%s\n' "${results[@]}" | awk '{ print $3 }' | median)"
  printf '| **%s median** | | | | **%s** | **%s** | **%s** | | |\n' "$mode" "$med_cpu" "$med_rx" "$med_all"
done
