#!/bin/sh
# Assemble the package's private virtualenv from wheels, without running the target's Python (so it also works for
# a foreign architecture). Called by debian/rules:
#   install-venv.sh PKGDIR VENV PYVER GNU_CPU WHEELHOUSE PROJECT_WHEELS CONSTRAINTS
# Result, under PKGDIR:
#   VENV/pyvenv.cfg                       home = /usr/bin (Debian's python3 on the box)
#   VENV/bin/python3 -> /usr/bin/python3  (python, pythonPYVER -> python3)
#   VENV/bin/liveness-edge                the console script, with the venv's python as interpreter
#   VENV/lib/pythonPYVER/site-packages    liveness_edge + the pinned runtime wheels for GNU_CPU
set -eu
PKGDIR=$1 VENV=$2 PYVER=$3 CPU=$4 WHEELHOUSE=$5 PROJECT_WHEELS=$6 CONSTRAINTS=$7

ROOT="$PKGDIR$VENV"
SITE="$ROOT/lib/python$PYVER/site-packages"
PLATFORMS=$(dirname "$0")/platforms.sh
rm -rf "$ROOT"
mkdir -p "$SITE" "$ROOT/bin"

# Only the runtime pins from constraints.txt (it also pins test tools, which must not land in the package).
# pip with --target and --platform installs wheels only (never builds), from the local wheelhouse only.
env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null PIP_NO_INPUT=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    python3 -m pip install --no-index --find-links "$WHEELHOUSE" --find-links "$PROJECT_WHEELS" \
        --only-binary=:all: --target "$SITE" --no-compile --no-warn-script-location \
        --implementation cp --python-version "$PYVER" --abi "cp$(echo "$PYVER" | tr -d .)" \
        $("$PLATFORMS" "$CPU") \
        -c "$CONSTRAINTS" liveness-edge

# pip --target puts console scripts in site-packages/bin with the build machine's interpreter: replace them.
rm -rf "$SITE/bin"
ln -s /usr/bin/python3 "$ROOT/bin/python3"
ln -s python3 "$ROOT/bin/python"
ln -s python3 "$ROOT/bin/python$PYVER"
cat > "$ROOT/pyvenv.cfg" <<CFG
home = /usr/bin
include-system-site-packages = false
version = $PYVER
CFG
cat > "$ROOT/bin/liveness-edge" <<SCRIPT
#!$VENV/bin/python3
import sys

from liveness_edge.cli import main

sys.exit(main())
SCRIPT
chmod 0755 "$ROOT/bin/liveness-edge"

# Files the build tools leave that have no use on the box.
find "$SITE" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$SITE" -name '*.dist-info' -type d -exec rm -f {}/INSTALLER {}/REQUESTED {}/direct_url.json \;
echo "install-venv: $(du -sh "$ROOT" | cut -f1) in $VENV for $CPU"
