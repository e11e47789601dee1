#!/bin/sh
# Build (once) and cache a clean Debian 12 root for the package tests: .cache/deb/roots/bookworm-ARCH.tar
#   tools/deb/mkroot.sh ARCH [CACHE_DIR]
# The root is debootstrap's minbase plus python3 and systemd (what a box running the package has; systemd brings
# systemd-sysusers, which the package's postinst uses). For a foreign ARCH it needs qemu-user-static + binfmt_misc.
set -eu
ARCH=${1:?usage: mkroot.sh ARCH [CACHE_DIR]}
CACHE=${2:-.cache/deb}
MIRROR=${DEB_MIRROR:-http://deb.debian.org/debian}
TAR="$CACHE/roots/bookworm-$ARCH.tar"
[ -s "$TAR" ] && { echo "mkroot: cached $TAR"; exit 0; }
mkdir -p "$CACHE/roots"
WORK=$(mktemp -d "$CACHE/roots/.build-$ARCH.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/root"
HOST=$(dpkg --print-architecture)
if [ "$ARCH" != "$HOST" ]; then
    QEMU=$(tools/deb/qemu-interp.sh "$ARCH")  # the binfmt interpreter, copied into the root at the same path
    debootstrap --arch="$ARCH" --variant=minbase --include=python3,systemd --foreign bookworm "$ROOT" "$MIRROR"
    mkdir -p "$ROOT$(dirname "$QEMU")"
    cp "$(readlink -f "$QEMU")" "$ROOT$QEMU"
    chroot "$ROOT" /debootstrap/debootstrap --second-stage
else
    debootstrap --arch="$ARCH" --variant=minbase --include=python3,systemd bookworm "$ROOT" "$MIRROR"
fi
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/*
tar -C "$ROOT" -cf "$TAR.tmp" .
mv "$TAR.tmp" "$TAR"
echo "mkroot: wrote $TAR ($(du -h "$TAR" | cut -f1))"
