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
# The command: a shell wrapper (no #! into a private interpreter path). -I: ignore PYTHON* variables, the user's
# site-packages and the current directory, so only the venv's packages are imported.
cat > "$ROOT/bin/liveness-edge" <<SCRIPT
#!/bin/sh
exec $VENV/bin/python3 -I -m liveness_edge "\$@"
SCRIPT
chmod 0755 "$ROOT/bin/liveness-edge"

# Every distribution in the venv must be pinned in CONSTRAINTS (a dependency that arrives unpinned would be whatever
# PyPI served that day, and the package would differ from build to build).
python3 - "$SITE" "$CONSTRAINTS" <<'PY'
import pathlib, re, sys
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
site, constraints = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
pinned = {norm(line.split("==")[0].strip()) for line in constraints.read_text().splitlines() if "==" in line}
installed = {norm(d.name[: -len(".dist-info")].rsplit("-", 1)[0]) for d in site.glob("*.dist-info")}
unpinned = sorted(installed - pinned - {"liveness-edge"})
if unpinned:
    sys.exit(f"install-venv.sh: not pinned in {constraints}: {', '.join(unpinned)}")
PY
# LiteRT's ahead-of-time compiler plugins for phone NPUs and its apply_plugin_main tool are model-building
# tools, never loaded by the interpreter; they also carry RPATHs into their vendors' build trees. Its Intel OpenVINO
# dispatch library needs an OpenVINO runtime (libopenvino.so) that neither Debian nor the package provides, and the
# daemon has no OpenVINO delegate.
rm -rf "$SITE"/ai_edge_litert/vendors/*/compiler "$SITE/ai_edge_litert/tools/apply_plugin_main" \
    "$SITE/ai_edge_litert/vendors/intel_openvino/dispatch"
# Wheels mark some modules executable; only ELF files keep the x bits (nothing in site-packages is run directly).
python3 - "$SITE" <<'PY'
import os, stat, sys
for top, _dirs, files in os.walk(sys.argv[1]):
    for name in files:
        path = os.path.join(top, name)
        mode = os.lstat(path).st_mode
        if stat.S_ISREG(mode) and mode & 0o111:
            with open(path, "rb") as fh:
                head = fh.read(4)
            if head != b"\x7fELF":
                os.chmod(path, mode & ~0o111)
PY
# Files the build tools leave that have no use on the box.
find "$SITE" -name __pycache__ -type d -prune -exec rm -rf {} +
find "$SITE" -name '*.dist-info' -type d -exec rm -f {}/INSTALLER {}/REQUESTED {}/direct_url.json \;
echo "install-venv: $(du -sh "$ROOT" | cut -f1) in $VENV for $CPU"
