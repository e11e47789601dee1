#!/bin/sh
# Print the binfmt_misc interpreter registered for ARCH's ELF binaries, or fail saying why emulation is unavailable.
set -eu
ARCH=${1:?usage: qemu-interp.sh ARCH}
case "$ARCH" in
    arm64) NAME=qemu-aarch64 ;;
    armhf) NAME=qemu-arm ;;
    *) NAME=qemu-$ARCH ;;
esac
BM=/proc/sys/fs/binfmt_misc
if [ ! -e "$BM/status" ]; then
    mount -t binfmt_misc binfmt_misc "$BM" 2>/dev/null || { echo "qemu-interp: binfmt_misc is not mounted and cannot be mounted here" >&2; exit 1; }
fi
[ -e "$BM/$NAME" ] || { echo "qemu-interp: no binfmt entry $NAME (install qemu-user-static and binfmt-support)" >&2; exit 1; }
grep -q '^enabled' "$BM/$NAME" || { echo "qemu-interp: binfmt entry $NAME is disabled" >&2; exit 1; }
INTERP=$(sed -n 's/^interpreter //p' "$BM/$NAME")
[ -x "$INTERP" ] || { echo "qemu-interp: interpreter $INTERP missing" >&2; exit 1; }
echo "$INTERP"
