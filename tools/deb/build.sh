#!/bin/sh
# Build the .deb for ARCH from the working tree (tracked and new, non-ignored files) in a staging copy, so that
# debian/rules' clean never touches the tree other work happens in (.egg-info, build/).
#   tools/deb/build.sh ARCH WHEELHOUSE OUTDIR [VERSION]
# DEB_BUILDDEB_OPTS (environment): dpkg-deb compression, default -Zxz -z3.
# VERSION (optional) replaces the Debian version in the staged debian/changelog (the upgrade test uses it).
set -eu
ARCH=$1 WHEELHOUSE=$(realpath "$2") OUTDIR=$3 VERSION=${4:-}
HOST=$(dpkg --print-architecture)
SRC=$(git rev-parse --show-toplevel)
mkdir -p "$OUTDIR"
OUTDIR=$(realpath "$OUTDIR")
STAGE=$(mktemp -d "$OUTDIR/.stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir "$STAGE/src"
(cd "$SRC" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$SRC" && tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -C "$STAGE/src" -xf -
if [ -n "$VERSION" ]; then
    {
        printf 'liveness-edge (%s) bookworm; urgency=medium\n\n  * Rebuild for the upgrade test.\n\n' "$VERSION"
        printf ' -- liveness-edge developers <liveness-edge@users.noreply.github.com>  %s\n\n' "$(date -R)"
        cat "$STAGE/src/debian/changelog"
    } > "$STAGE/src/debian/changelog.new"
    mv "$STAGE/src/debian/changelog.new" "$STAGE/src/debian/changelog"
fi
CROSS=""
# A foreign-arch build needs no cross compiler (nothing is compiled), so skip the cross build-dependency check.
[ "$ARCH" != "$HOST" ] && CROSS="--host-arch=$ARCH -d"
(cd "$STAGE/src" && WHEELHOUSE="$WHEELHOUSE" DEB_BUILDDEB_OPTS="${DEB_BUILDDEB_OPTS:--Zxz -z3}" dpkg-buildpackage -b -us -uc $CROSS) >"$STAGE/build.log" 2>&1 || {
    tail -n 60 "$STAGE/build.log" >&2; echo "build.sh: dpkg-buildpackage failed for $ARCH" >&2; exit 1; }
grep -E '^install-venv:' "$STAGE/build.log" || true
for f in "$STAGE"/*.deb "$STAGE"/*.buildinfo "$STAGE"/*.changes; do
    [ -e "$f" ] && mv "$f" "$OUTDIR/"
done
ls "$OUTDIR"/*_"$ARCH".deb
