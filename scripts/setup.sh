#!/usr/bin/env bash
# sluice set-up: installs everything the build, the demo and the test suite need
# on a fresh Debian 12 (bookworm) machine. Idempotent: a second run checks and
# skips in a few seconds.
#
# What it installs (see ../shared/reference/crates.md for the eBPF route):
#   - Debian's rustc-web/cargo-web/rust-web-src (rustc 1.96, LLVM 22) used only
#     to build the eBPF programs (with RUSTC_BOOTSTRAP=1 for -Z build-std=core);
#   - llvm-22-dev and bpf-linker 0.13.0 built against it (--features llvm-22);
#   - the lab's tools and peers: iproute2, ethtool, nftables, curl, nginx-light,
#     haproxy, wrk, ab (apache2-utils), tcpdump; keepalived and tshark (the VRRP
#     interop test: its peer, and the decoder of sluice's adverts);
#   - dig and kdig (the GSLB lab test's DNS clients), gdnsd and dnsperf (the
#     GSLB benchmark's peer and load generator);
#   - cargo-fuzz, for the fuzz targets in fuzz/ (benches/fuzz.sh);
#   - capsh (libcap2-bin), systemd-analyze (systemd; it looks up the unit's man
#     pages with man-db), dpkg-shlibdeps (dpkg-dev)
#     and cargo-deb: the least-privilege and packaging tests.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

APT_PACKAGES=(
  rustc-web cargo-web rust-web-src llvm-22-dev
  iproute2 iputils-ping ethtool nftables curl procps psmisc
  nginx-light haproxy wrk apache2-utils tcpdump nghttp2-client netsniff-ng bpftool fonts-dejavu-core
  keepalived tshark
  bind9-dnsutils knot-dnsutils gdnsd dnsperf
  libcap2-bin systemd dpkg-dev man-db
)
BPF_LINKER_VERSION="0.13.0"
# Builds with rustup's stable 1.95; drives libFuzzer through RUSTC_BOOTSTRAP=1.
CARGO_FUZZ_VERSION="0.13.2"
# Builds the Debian package (scripts/package.sh, tests/package.rs).
CARGO_DEB_VERSION="3.8.0"

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (installs Debian packages; the lab needs CAP_NET_ADMIN)"
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts nothing here (no systemd as PID 1), but make sure the
  # packaged daemons do not hold ports the lab wants.
  for svc in nginx haproxy keepalived gdnsd; do
    pkill -x "$svc" 2>/dev/null || true
  done
else
  log "Debian packages present"
fi

# A toolchain name for Debian's compiler, so aya-build can select it with
# `cargo +debian-web` while the default toolchain stays rustup's stable.
if command -v rustup >/dev/null 2>&1; then
  if ! rustup toolchain list | grep -q '^debian-web'; then
    log "linking Debian's rustc-web as toolchain 'debian-web'"
    rustup toolchain link debian-web /usr
  fi
fi

CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
if ! "$CARGO_BIN/bpf-linker" --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "building bpf-linker $BPF_LINKER_VERSION against LLVM 22 (about 2 minutes)"
  LLVM_PREFIX=/usr/lib/llvm-22 cargo install "bpf-linker@$BPF_LINKER_VERSION" --locked \
    --no-default-features --features llvm-22
else
  log "bpf-linker $BPF_LINKER_VERSION present"
fi

if ! "$CARGO_BIN/cargo-fuzz" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION (about 30 seconds)"
  cargo install "cargo-fuzz@$CARGO_FUZZ_VERSION" --locked
else
  log "cargo-fuzz $CARGO_FUZZ_VERSION present"
fi

if ! "$CARGO_BIN/cargo-deb" --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  log "installing cargo-deb $CARGO_DEB_VERSION (about a minute)"
  cargo install "cargo-deb@$CARGO_DEB_VERSION" --locked
else
  log "cargo-deb $CARGO_DEB_VERSION present"
fi

log "ready"
