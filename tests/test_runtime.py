import json
import os
import subprocess
import threading

import numpy as np
import pytest

from liveness_edge.config import load_config
from liveness_edge.errors import StartupError
from liveness_edge.models import choose_variant
from liveness_edge.runtime import Model, choose_backend
from liveness_edge.runtime import litert
from media import ROOT

MODELS = ROOT / "models" / "tflite"
# A missing accelerator library must not leave a traceback on stderr (the journal) beside the clear message.
no_traceback_on_stderr = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


@no_traceback_on_stderr
def test_explicit_edgetpu_without_the_library_names_it():
    with pytest.raises(StartupError, match="libedgetpu.so.1"):
        choose_backend("edgetpu", 1)


@no_traceback_on_stderr
def test_explicit_gpu_without_the_library_names_it(monkeypatch):
    monkeypatch.setenv("LIVENESS_EDGE_GPU_DELEGATE", "/nonexistent/libgpu_delegate.so")
    with pytest.raises(StartupError, match="libgpu_delegate.so"):
        choose_backend("gpu", 1)


@no_traceback_on_stderr
def test_a_delegate_that_finds_no_device_is_worth_a_restart(monkeypatch):
    # libedgetpu loads but finds no Coral (a USB one still enumerating at boot): LiteRT's load_delegate raises
    # ValueError. That is StartupUnavailable, which the CLI turns into exit 75 and systemd restarts; a library that
    # is missing or is no delegate at all stays a plain StartupError (exit 2).
    import ctypes.util
    import dataclasses

    from liveness_edge.errors import StartupUnavailable

    def no_device(*_args):
        raise ValueError("Failed to load delegate from libedgetpu.so.1")

    package = litert.interpreter_package()
    monkeypatch.setattr(litert, "_cached", dataclasses.replace(package, load_delegate=no_device))
    monkeypatch.setattr("ctypes.CDLL", lambda _path: type("Lib", (), {"tflite_plugin_create_delegate": None})())
    with pytest.raises(StartupUnavailable, match="found no device"):
        choose_backend("edgetpu", 1)
    monkeypatch.undo()
    monkeypatch.setenv("LIVENESS_EDGE_GPU_DELEGATE", ctypes.util.find_library("m") or "libm.so.6")
    with pytest.raises(StartupError, match="is not a TFLite delegate library") as err:
        choose_backend("gpu", 1)
    assert not isinstance(err.value, StartupUnavailable)


@no_traceback_on_stderr
def test_auto_falls_back_to_cpu_and_says_why(caplog):
    caplog.set_level("INFO")
    backend = choose_backend("auto", 2)
    assert backend.key == "cpu"
    assert "skipping edgetpu" in caplog.text and "libedgetpu.so.1" in caplog.text


def test_pool_never_shares_an_interpreter_and_stays_bounded():
    model = Model(MODELS / "face_detection_short_range.tflite", choose_backend("cpu", 1))
    rng = np.random.default_rng(0)
    inputs = [rng.uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32) for _ in range(4)]
    expected = [model.run(x)[0] for x in inputs]
    barrier = threading.Barrier(4)
    errors = []

    def worker(k):
        barrier.wait()
        for _ in range(15):
            if not np.allclose(model.run(inputs[k])[0], expected[k], atol=1e-5):
                errors.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, "a result was corrupted by a shared interpreter"
    assert 1 <= model.created <= 4


def test_a_batch_gives_what_frame_by_frame_gives_on_both_paths():
    # The bundled models have a fixed batch of 1 (looped frame by frame); an integrator's model with a dynamic batch
    # (-1 in its signature) is resized to the batch instead. The same file serves both paths here: TFLite resizes a
    # fixed-batch input on request, which is all the dynamic path does.
    class DynamicBatch(Model):
        batchable = True

    path = MODELS / "antispoof.tflite"
    fixed, dynamic = Model(path, choose_backend("cpu", 1)), DynamicBatch(path, choose_backend("cpu", 1))
    assert not fixed.batchable
    batch = np.random.default_rng(1).uniform(0, 1, (5, 128, 128, 3)).astype(np.float32)
    one_by_one = np.concatenate([fixed.run(batch[i : i + 1])[0] for i in range(5)])
    assert one_by_one.shape == (5, 1) and np.ptp(one_by_one) > 0  # different inputs, different answers
    assert np.allclose(fixed.run(batch)[0], one_by_one, atol=1e-5)
    assert np.allclose(dynamic.run(batch)[0], one_by_one, atol=1e-5)
    assert np.allclose(dynamic.run(batch[:2])[0], one_by_one[:2], atol=1e-5)  # a smaller batch resizes again


def test_variant_choice_per_backend():
    entry = {"variants": {"float32": {}, "int8": {}}, "preferred": {"cpu": "int8", "edgetpu": "int8"}}
    cpu = choose_backend("cpu", 1)
    assert choose_variant(entry, "m", "auto", cpu) == "int8"
    assert choose_variant(entry, "m", "float32", cpu) == "float32"
    float_only = {"variants": {"float32": {}}, "preferred": {"edgetpu": "int8"}}

    class FakeTpu:
        key, preferred_variant = "edgetpu", "int8"

    assert choose_variant(float_only, "m", "auto", FakeTpu()) == "float32"  # no int8 file: fall back
    with pytest.raises(StartupError, match="no int8 variant"):
        choose_variant(float_only, "m", "int8", cpu)


def test_daemon_uses_the_faster_variant_recorded_for_the_cpu():
    from liveness_edge.models import load_models, read_manifest

    cfg = load_config(ROOT / "config" / "liveness-edge.ini")
    manifest = read_manifest(cfg.models.dir)
    models = load_models(cfg, warm=False)
    for info in models.infos:
        assert info.variant == manifest["models"][info.name]["preferred"]["cpu"]


def test_forced_litert_package_is_used(monkeypatch):
    monkeypatch.setenv(litert.FORCE_ENV, "litert")
    monkeypatch.setattr(litert, "_cached", None)
    assert litert.interpreter_package().name == "ai-edge-litert"


TFLITE_PY = ROOT / ".venv-tflite" / "bin" / "python"
FALLBACK_SCRIPT = """
import json, sys
import numpy as np
from liveness_edge.runtime import Model, choose_backend
from liveness_edge.runtime.litert import interpreter_package
backend = choose_backend("cpu", 1)
model = Model(sys.argv[1], backend)
x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
out = model.run(x)
print(json.dumps({"package": interpreter_package().name, "backend": backend.describe(),
                  "outputs": [o.ravel()[:64].tolist() for o in out], "shapes": [list(o.shape) for o in out]}))
"""


@pytest.mark.skipif(not TFLITE_PY.exists(), reason="no .venv-tflite (make test builds it where a tflite-runtime "
                                                   "wheel exists for this Python: numpy < 2, so not in .venv)")
def test_tflite_runtime_fallback_computes_what_litert_computes():
    """A box with only tflite_runtime (no ai-edge-litert) picks it by itself and gets the same numbers."""
    path = MODELS / "face_detection_short_range.tflite"
    env = {k: v for k, v in os.environ.items() if k != litert.FORCE_ENV}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([str(TFLITE_PY), "-c", FALLBACK_SCRIPT, str(path)], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    fallback = json.loads(run.stdout.strip().splitlines()[-1])
    assert fallback["package"] == "tflite-runtime" and "tflite-runtime" in fallback["backend"]
    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    reference = Model(path, choose_backend("cpu", 1)).run(x)
    assert fallback["shapes"] == [list(o.shape) for o in reference]
    for got, want in zip(fallback["outputs"], reference):
        np.testing.assert_allclose(got, want.ravel()[:64], rtol=1e-3, atol=1e-3)


def test_unknown_forced_package_is_a_startup_error(monkeypatch):
    litert.interpreter_package()  # a package already loaded and cached must not hide the wrong value
    monkeypatch.setenv(litert.FORCE_ENV, "onnx")
    with pytest.raises(StartupError, match="LIVENESS_EDGE_INTERPRETER"):
        litert.interpreter_package()
    monkeypatch.setattr(litert, "_cached", None)
    with pytest.raises(StartupError, match="LIVENESS_EDGE_INTERPRETER"):
        litert.interpreter_package()


def test_an_edgetpu_compiled_file_is_reported_with_its_own_digest_as_unchecked(tmp_path):
    # An integrator compiles <model>_int8_edgetpu.tflite beside the bundled files; it is not in the manifest, so
    # /health and `liveness-edge models` must not claim it was hash-checked, nor show the int8 file's digest.
    import hashlib
    import shutil

    from liveness_edge.models import _bundled, read_manifest

    for name in ("manifest.json", "antispoof_int8.tflite"):
        shutil.copy(MODELS / name, tmp_path / name)
    compiled = tmp_path / "antispoof_int8_edgetpu.tflite"
    compiled.write_bytes(b"compiled by edgetpu_compiler")

    class FakeTpu:
        key, preferred_variant = "edgetpu", "int8"

        def describe(self):
            return "edgetpu"

    cfg = load_config(ROOT / "config" / "liveness-edge.ini")
    path, info, _ = _bundled(tmp_path, read_manifest(tmp_path), "antispoof", "liveness", cfg, FakeTpu())
    assert path == compiled and info.file == str(compiled)
    assert info.sha256 == hashlib.sha256(compiled.read_bytes()).hexdigest() and info.sha256_ok is None
    compiled.unlink()  # without it, the checked int8 file is used and reported as checked
    path, info, _ = _bundled(tmp_path, read_manifest(tmp_path), "antispoof", "liveness", cfg, FakeTpu())
    assert path.name == "antispoof_int8.tflite" and info.sha256_ok is True
