#!/usr/bin/env bash
# Checks the README's first command where a new user would type it: a
# clean Debian root made with debootstrap (minbase: no compiler, no cmake,
# no OpenSSL headers), with only the Rust toolchain bind-mounted in. It
# clones this repository into the root and runs `./scripts/demo.sh` there,
# which must install what the build needs and run the demo to its summary.
# Needs root (debootstrap, chroot, mounts) and Debian's package mirror.
# Slow (a full build from nothing): not part of `.ci/run`.
#
#   sudo scripts/check_first_command.sh            # ROOT=/var/tmp/modelbus-first-command
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${ROOT:-/var/tmp/modelbus-first-command}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=${CARGO_BIN:-$HOME/.cargo/bin}

command -v debootstrap >/dev/null || { apt-get update -q && apt-get install -y -q debootstrap; }
if [[ ! -x $root/bin/bash ]]; then
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian
fi
mounted=()
cleanup() { for m in "${mounted[@]}"; do umount -l "$m" 2>/dev/null || true; done; }
trap cleanup EXIT
bind() { mkdir -p "$2"; mount --bind "$1" "$2"; mounted+=("$2"); }
bind "$rustup_home" "$root/opt/rustup"
bind "$cargo_bin" "$root/opt/cargo-bin"
bind /dev "$root/dev"
mount -t proc proc "$root/proc"; mounted+=("$root/proc")
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A network whose egress re-signs TLS (as this workplace's does) needs its
# own CA in the root too; `ca-certificates`, which the first command
# installs, adds these to the bundle. A machine on the open internet has none.
mkdir -p "$root/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true

rm -rf "$root/src"
git clone -q "$repo" "$root/src"
echo "==> in $root: what the root has of a build toolchain before the command:"
chroot "$root" sh -c 'for t in cc gcc make cmake pkg-config; do printf "  %-11s %s\n" "$t" "$(command -v $t || echo missing)"; done; dpkg -s libssl-dev >/dev/null 2>&1 && echo "  libssl-dev  present" || echo "  libssl-dev  missing"'
echo "==> ./scripts/demo.sh --events 2000 (the README's first command)"
chroot "$root" env -i HOME=/root TERM=dumb PATH=/opt/cargo-bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
  RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo bash -c 'cd /src && ./scripts/demo.sh --events 2000' 2>&1 \
  | tee "$root/first-command.log"
grep -q "throughput" "$root/first-command.log" && grep -q "look further" "$root/first-command.log"
echo "==> the first command ran the demo to its summary (log: $root/first-command.log)"
