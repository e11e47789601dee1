"""Reproducibility check: build models twice into temporary folders and compare with each other and models/tflite.

.tflite files must be byte-identical. manifest.json must be identical except the measured invoke_ms_cpu figures
(and the preferred CPU variant derived from them), which are timings of this machine and vary run to run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMMITTED = ROOT / "models" / "tflite"


def stable(manifest: dict) -> dict:
    for e in manifest["models"].values():
        e.pop("preferred", None)
        for v in e["variants"].values():
            v.pop("invoke_ms_cpu", None)
    return manifest


def diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            yield from diff(a.get(k), b.get(k), f"{path}/{k}")
    elif a != b:
        yield path, a, b


def main() -> int:
    dirs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in (1, 2):
            out = Path(tmp) / f"run{i}"
            subprocess.run([sys.executable, str(HERE / "build.py"), "--out", str(out)], check=True, cwd=ROOT)
            dirs.append(out)
        bad = 0
        for ref in [dirs[1], COMMITTED]:
            names = sorted(p.name for p in dirs[0].glob("*.tflite"))
            other = sorted(p.name for p in ref.glob("*.tflite"))
            if names != other:
                print(f"file sets differ: {names} vs {other} ({ref})")
                bad += 1
            for n in names:
                if (ref / n).exists() and (dirs[0] / n).read_bytes() != (ref / n).read_bytes():
                    print(f"DIFFERENT {n} vs {ref}")
                    bad += 1
            a = stable(json.loads((dirs[0] / "manifest.json").read_text()))
            b = stable(json.loads((ref / "manifest.json").read_text()))
            if a != b:
                print(f"manifest differs (beyond timings) vs {ref}:")
                for path, x, y in diff(a, b):
                    print(f"  {path}: {x!r} != {y!r}")
                bad += 1
        print("reproducible: byte-identical .tflite, manifest equal but for timings" if not bad else f"{bad} differences")
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
