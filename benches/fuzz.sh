#!/usr/bin/env bash
# Coverage-guided fuzzing of sluice's parsers (issue 14, point 3), with
# cargo-fuzz / libFuzzer. The project is fuzz/ (its own cargo workspace);
# each target is one file in fuzz/fuzz_targets/ and panics when an
# invariant breaks:
#
#   h1_request_stream  raw head scanner (smuggling checks) vs read boundaries
#   h1_request_head    fast-path request parse + rewrite: forwarded head
#                      parses again and frames the body as relayed
#   h1_response_head   the same towards the client
#   h1_chunked         chunked decoder: end and data vs read boundaries
#   proxy_protocol     PROXY v1/v2 parse; re-encode round trips
#   config             TOML config front end; diagnostics point inside the text
#   wire_checksum      RFC 1624 incremental checksum = full recompute; flow hash
#
# Inputs: the committed seeds fuzz/corpus/TARGET/, the regressions
# fuzz/regressions/TARGET/ (inputs that once crashed; replayed first, always)
# and what earlier runs found, fuzz/scratch/TARGET/ (git-ignored; new
# corpus entries go there, never into the seeds). Crash artifacts land in
# fuzz/artifacts/TARGET/ and their path is printed; the script then exits 1.
#
# Usage:
#   benches/fuzz.sh [--fresh] TARGET MINUTES   one campaign (--fresh: empty
#                                              scratch corpus first)
#   benches/fuzz.sh [--fresh] all MINUTES      every target in turn
#   benches/fuzz.sh --brief [SECONDS]          the test suite's step: every
#                                              target replayed, then fuzzed
#                                              SECONDS (default 20, max 30)
#                                              from the seeds alone
#
# A crash becomes a regression: minimise it and commit the result,
#   RUSTC_BOOTSTRAP=1 cargo fuzz tmin --fuzz-dir fuzz -a TARGET fuzz/artifacts/TARGET/crash-...
#   cp fuzz/artifacts/TARGET/minimized-from-... fuzz/regressions/TARGET/SHORT-NAME
# It then fails this script's replay and the plain `cargo test` replays
# (crates/*/tests/fuzz_replay.rs) until the bug is fixed.
#
# Toolchain: rustup's stable rustc with RUSTC_BOOTSTRAP=1 (cargo fuzz passes
# -Z flags); AddressSanitizer works with it (FUZZ_SANITIZER=none turns it
# off). cargo-fuzz is installed by scripts/setup.sh. Builds and runs are
# niced (FUZZ_NICE, default 19): the 2-core machine is shared.
# Results: BENCHMARKS.md, "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(h1_request_stream h1_request_head h1_response_head h1_chunked proxy_protocol config wire_checksum)
# The test suite's budget per target: at most 30 s each (issue 14).
BRIEF_SECONDS_DEFAULT=20
BRIEF_SECONDS_MAX=30
# An input that takes longer than this is reported as a hang (a finding).
PER_INPUT_TIMEOUT_SECONDS=10
# libFuzzer's own default, spelled out: past it a run counts as a leak/OOM.
RSS_LIMIT_MB=2048
SANITIZER="${FUZZ_SANITIZER:-address}"
NICE="${FUZZ_NICE:-19}"
FUZZ_DIR=fuzz

log() { printf 'fuzz: %s\n' "$*" >&2; }
die() { log "$*"; exit 2; }
usage() { sed -n '/^# Usage:/,/^#   from the seeds alone/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

is_target() {
  local t
  for t in "${TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done
  return 1
}

fresh=0
brief=0
while [ $# -gt 0 ]; do
  case "$1" in
    --fresh) fresh=1; shift ;;
    --brief) brief=1; shift ;;
    -h|--help) usage ;;
    *) break ;;
  esac
done

if [ "$brief" -eq 1 ]; then
  seconds="${1:-$BRIEF_SECONDS_DEFAULT}"
  [[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -ge 1 ] && [ "$seconds" -le "$BRIEF_SECONDS_MAX" ] ||
    die "--brief takes 1..$BRIEF_SECONDS_MAX seconds, not '$seconds'"
  selected=("${TARGETS[@]}")
else
  [ $# -eq 2 ] || usage
  [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -ge 1 ] || die "MINUTES must be a whole number >= 1, not '$2'"
  seconds=$(( $2 * 60 ))
  if [ "$1" = all ]; then
    selected=("${TARGETS[@]}")
  else
    is_target "$1" || die "unknown target '$1' (one of: ${TARGETS[*]}, all)"
    selected=("$1")
  fi
fi

cargo fuzz --version >/dev/null 2>&1 || die "cargo fuzz is not installed (run scripts/setup.sh)"
triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$FUZZ_DIR/target/$triple/release"

# One build for every selected target. -a: debug assertions and overflow
# checks stay on (an overflow is a finding).
log "building ${selected[*]} (sanitizer: $SANITIZER)"
build_args=()
[ "${#selected[@]}" -eq 1 ] && build_args=("${selected[0]}")
RUSTC_BOOTSTRAP=1 nice -n "$NICE" cargo fuzz build --fuzz-dir "$FUZZ_DIR" -a -s "$SANITIZER" "${build_args[@]}"

# Input files of a directory (none if it is absent); dot-files and READMEs
# are not inputs.
inputs_of() {
  [ -d "$1" ] || return 0
  find "$1" -maxdepth 1 -type f ! -name '.*' ! -name 'README*' | sort
}

dict_of() {
  case "$1" in
    h1_*) echo "$FUZZ_DIR/dict/http.dict" ;;
    config) echo "$FUZZ_DIR/dict/toml.dict" ;;
    *) echo "" ;;
  esac
}

# The value after KEY in the last libFuzzer status line ("#N DONE cov: ...").
status_field() {
  grep -E '^#[0-9]+' "$1" | tail -n1 | grep -oE "$2: [^ ]+" | cut -d' ' -f2 || true
}

final_stat() { sed -n "s/^stat::$2: *//p" "$1" | tail -n1; }

results=()
failed=()

# The panic messages (the line after "panicked at") and artifact paths of a log.
show_panics() {
  grep -E -A1 "panicked at" "$1" | grep -vE "panicked at|^--" | sort | uniq -c >&2 || true
  grep -E "Test unit written to" "$1" | head -n 4 >&2 || true
}

# run_target TARGET SECONDS CORPUS_OUT LOG
run_target() {
  local t="$1" secs="$2" out="$3" logf="$4"
  local bin="$bin_dir/$t" seeds="$FUZZ_DIR/corpus/$t" regs="$FUZZ_DIR/regressions/$t"
  local artifacts="$FUZZ_DIR/artifacts/$t/"
  mkdir -p "$out" "$artifacts" "$(dirname "$logf")"
  [ -x "$bin" ] || die "$t: no binary at $bin"

  # 1. Replay every committed input, one process each: a regression that
  # still crashes is named here, before any fuzzing, and so is every other.
  local files=() f rc=0 crashed=()
  mapfile -t files < <(inputs_of "$seeds"; inputs_of "$regs")
  [ "${#files[@]}" -gt 0 ] || die "$t: no seed corpus in $seeds"
  : >"$logf.replay"
  for f in "${files[@]}"; do
    rc=0
    nice -n "$NICE" "$bin" -artifact_prefix="$artifacts" -timeout="$PER_INPUT_TIMEOUT_SECONDS" \
      -rss_limit_mb="$RSS_LIMIT_MB" "$f" >>"$logf.replay" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
      crashed+=("$f")
      log "$t: CRASH replaying $f (exit $rc)"
    fi
  done
  if [ "${#crashed[@]}" -gt 0 ]; then
    show_panics "$logf.replay"
    log "$t: ${#crashed[@]} of ${#files[@]} committed inputs crash; log: $logf.replay"
    results+=("| $t | replay | - | - | - | - | - | crash: ${crashed[*]} |")
    failed+=("$t")
    return
  fi

  # 2. Fuzz: new entries go to $out (the first corpus directory); the seeds
  # and regressions are read, never written.
  local dict corpora=("$out" "$seeds")
  [ -d "$regs" ] && corpora+=("$regs")
  local extra=()
  dict="$(dict_of "$t")"
  [ -n "$dict" ] && extra+=("-dict=$dict")
  log "$t: fuzzing ${secs}s (${#files[@]} committed inputs replayed ok; corpus out: $out)"
  rc=0
  nice -n "$NICE" "$bin" -artifact_prefix="$artifacts" -max_total_time="$secs" \
    -timeout="$PER_INPUT_TIMEOUT_SECONDS" -rss_limit_mb="$RSS_LIMIT_MB" -print_final_stats=1 \
    "${extra[@]}" "${corpora[@]}" >"$logf" 2>&1 || rc=$?

  local execs eps cov ft corp artifact
  execs="$(final_stat "$logf" number_of_executed_units)"
  eps="$(final_stat "$logf" average_exec_per_sec)"
  cov="$(status_field "$logf" cov)"
  ft="$(status_field "$logf" ft)"
  corp="$(status_field "$logf" corp)"
  artifact="$(sed -n 's/.*Test unit written to //p' "$logf" | tail -n1)"
  local outcome="0 crashes"
  if [ "$rc" -ne 0 ]; then
    outcome="CRASH (exit $rc): ${artifact:-no artifact, see $logf}"
    failed+=("$t")
    show_panics "$logf"
  fi
  log "$t: ${execs:-?} executions (${eps:-?}/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?} (entries/bytes), $outcome; log: $logf"
  results+=("| $t | $secs | ${execs:-?} | ${eps:-?} | ${corp:-?} | ${cov:-?} | ${ft:-?} | $outcome |")
}

stamp="$(date +%Y%m%d-%H%M%S)"
for t in "${selected[@]}"; do
  if [ "$brief" -eq 1 ]; then
    # From the seeds alone, so that the suite's verdict does not depend on
    # what earlier local runs left in scratch/.
    out="$FUZZ_DIR/scratch/brief/$t"
    rm -rf "$out"
    run_target "$t" "$seconds" "$out" "$FUZZ_DIR/scratch/logs/brief-$t.log"
  else
    out="$FUZZ_DIR/scratch/$t"
    [ "$fresh" -eq 1 ] && rm -rf "$out"
    run_target "$t" "$seconds" "$out" "$FUZZ_DIR/scratch/logs/$t-$stamp.log"
  fi
done

echo
echo "| Target | Seconds | Executions | Exec/s | Corpus (entries/bytes) | cov | ft | Result |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  log "crashes in: ${failed[*]} (artifacts under $FUZZ_DIR/artifacts/)"
  exit 1
fi
log "no crash in ${selected[*]}"
