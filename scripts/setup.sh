#!/usr/bin/env bash
# Installs what qmp needs on Debian 12 (bookworm): QEMU 10.0 from bookworm-backports
# (qemu-system-x86_64, qemu-storage-daemon and qemu-ga), openssl (for the TLS tests) and the npm dependencies.
# With --qemu-7.2, also unpacks QEMU 7.2 for the tests (scripts/qemu-7.2.sh); not by default, to keep
# the Quick start quick.
set -euo pipefail
with72=false
for arg in "$@"; do
  case "$arg" in
    --qemu-7.2) with72=true ;;
    *)
      echo "usage: $0 [--qemu-7.2]" >&2
      exit 2
      ;;
  esac
done
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" |
    $SUDO tee /etc/apt/sources.list.d/qmp-backports.list >/dev/null
fi
if ! command -v qemu-storage-daemon >/dev/null || ! qemu-system-x86_64 --version 2>/dev/null | grep -q "version 10\." ||
  ! [ -x /usr/sbin/qemu-ga ]; then
  $SUDO apt-get update -q
  # qemu-system-x86 brings qemu-system-x86_64; qemu-utils brings qemu-storage-daemon;
  # qemu-guest-agent brings qemu-ga (the guest agent tests run it on the host, its service not started).
  $SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-utils \
    qemu-guest-agent
fi
if ! command -v openssl >/dev/null; then
  # The TLS tests make their certificates with openssl.
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends openssl
fi
qemu-system-x86_64 --version | head -n 1
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund
fi
if $with72; then
  echo "QEMU 7.2 for the tests: QMP_TEST_QEMU=$(./scripts/qemu-7.2.sh)"
fi
