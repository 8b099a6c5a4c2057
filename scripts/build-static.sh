#!/usr/bin/env bash
# Static release binaries, as the release workflow builds them:
#   target/static/x86_64-unknown-linux-gnu/release/mdb   (rustup's toolchain)
#   target/static/aarch64-unknown-linux-gnu/release/mdb  (cross, see below)
# glibc with crt-static and OpenSSL linked in; DNS needs no NSS modules
# (glibc >= 2.34 has files and dns built in).
#
# The arm64 build cross-compiles with Debian's rustc-web and its arm64
# standard library (libstd-rust-web-dev:arm64), linked by Debian's aarch64
# GCC: rustup's toolchain cannot add a target on a machine that only reaches
# crates.io, PyPI, Debian and npm. Installs what it needs (root, apt).
# Usage: scripts/build-static.sh [amd64|arm64|all]
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
export OPENSSL_STATIC=1
# No debug sections in a shipped binary (it is a third of the size).
export CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo

need_apt() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

amd64() {
  need_apt libssl-dev pkg-config
  echo "== static amd64 build"
  RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target x86_64-unknown-linux-gnu --target-dir target/static
}

arm64() {
  dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64; apt-get update -qq; }
  need_apt rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu \
    libc6-dev-arm64-cross libssl-dev:arm64 qemu-user-static
  echo "== static arm64 cross build ($(/usr/bin/rustc --version))"
  local t=AARCH64_UNKNOWN_LINUX_GNU
  env RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc \
    "CARGO_TARGET_${t}_LINKER=aarch64-linux-gnu-gcc" \
    "CARGO_TARGET_${t}_RUSTFLAGS=-C target-feature=+crt-static" \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
    "${t}_OPENSSL_LIB_DIR=/usr/lib/aarch64-linux-gnu" \
    "${t}_OPENSSL_INCLUDE_DIR=/usr/include" \
    PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_PATH=/usr/lib/aarch64-linux-gnu/pkgconfig \
    /usr/bin/cargo build --release --locked --target aarch64-unknown-linux-gnu --target-dir target/static
}

case "$which" in
  amd64) amd64 ;;
  arm64) arm64 ;;
  all) amd64; arm64 ;;
  *) echo "usage: $0 [amd64|arm64|all]" >&2; exit 64 ;;
esac
