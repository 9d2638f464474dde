#!/usr/bin/env bash
# Unpacks QEMU 7.2 (Debian bookworm's packages) into .cache/qemu-7.2 without installing it, so that
# it sits beside the installed QEMU 10.0, and prints the path of its qemu-system-x86_64 on stdout
# (its qemu-storage-daemon is in the same folder, its qemu-ga in ../sbin; everything else goes to
# stderr). Usage:
#   QMP_TEST_QEMU="$(scripts/qemu-7.2.sh)" node scripts/run-tests.mjs qemu
# Runs again in a moment when that version is already unpacked. Needs apt (through sudo when not
# root) only to download, and to install the libraries 7.2 links against that 10.0 did not bring.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
root="$PWD/.cache/qemu-7.2"
packages=(qemu-system-x86 qemu-system-common qemu-system-data qemu-utils qemu-guest-agent)
binaries=(usr/bin/qemu-system-x86_64 usr/bin/qemu-storage-daemon usr/sbin/qemu-ga)

log() { echo "qemu-7.2: $*" >&2; }

# The newest 1:7.2 version apt knows for a package (madison lists the newest first).
version_of() {
  apt-cache madison "$1" | awk -F'|' '{ gsub(/ /, "", $2); print $2 }' | grep -m1 '^1:7\.2' || true
}

wanted=""
for p in "${packages[@]}"; do
  v="$(version_of "$p")"
  if [ -z "$v" ]; then
    log "apt knows no 1:7.2 version of $p; refreshing the package lists"
    $SUDO apt-get update -q >&2
    v="$(version_of "$p")"
  fi
  [ -n "$v" ] || { log "no 1:7.2 version of $p in the apt sources (Debian bookworm's main)"; exit 1; }
  wanted+="$p=$v "
done

missing_libs() {
  for b in "${binaries[@]}"; do ldd "$root/$b" | awk '/not found/ { print $1 }'; done | sort -u
}

if [ "$(cat "$root/.packages" 2>/dev/null || true)" != "$wanted" ] || [ ! -x "$root/${binaries[0]}" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  log "downloading $wanted"
  # As root apt drops to its _apt user to download, which cannot write to our temp dir.
  sandbox=()
  [ "$(id -u)" -ne 0 ] || sandbox=(-o APT::Sandbox::User=root)
  # shellcheck disable=SC2086 # $wanted is a list of package=version words.
  (cd "$work" && apt-get -q "${sandbox[@]}" download $wanted >&2)
  mkdir -p "$work/root"
  for deb in "$work"/*.deb; do dpkg -x "$deb" "$work/root"; done
  # Swap the folder in whole, so that an interrupted run never leaves a half-unpacked one.
  printf '%s' "$wanted" >"$work/root/.packages"
  mkdir -p "$(dirname "$root")"
  rm -rf "$root.old"
  [ ! -e "$root" ] || mv "$root" "$root.old"
  mv "$work/root" "$root"
  rm -rf "$root.old"
  # The libraries these packages depend on, for the case ldd finds some missing below.
  for deb in "$work"/*.deb; do dpkg-deb -f "$deb" Depends; done >"$root/.depends"
fi

if [ -n "$(missing_libs)" ]; then
  log "libraries missing: $(missing_libs | tr '\n' ' ')"
  # Their packages, from the Depends of 7.2's packages: names only (apt picks bookworm's),
  # the first of any alternatives, not QEMU's own packages or its firmware.
  deps="$(tr ',' '\n' <"$root/.depends" | sed -E 's/\|.*//; s/\(.*\)//; s/[[:space:]]//g' |
    grep -Ev '^(qemu-|seabios$|ipxe-qemu$|$)' | sort -u | tr '\n' ' ')"
  log "installing $deps"
  # shellcheck disable=SC2086 # a list of package names.
  $SUDO apt-get install -y -q --no-install-recommends $deps >&2
  if [ -n "$(missing_libs)" ]; then
    log "still missing: $(missing_libs | tr '\n' ' ')"
    exit 1
  fi
fi

"$root/${binaries[0]}" --version | head -n 1 >&2
echo "$root/${binaries[0]}"
