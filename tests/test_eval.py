"""The evaluation's figures (ISO/IEC 30107-3 terms) on hand-made scores, the synthetic attack generator's
determinism, and the skip when ../shared is absent."""

import subprocess
import sys

import numpy as np
import pytest

from media import ROOT
from tools.eval import metrics
from tools.synth.generate import synth_print, synth_replay


def _items():
    return ([{"file": f"l{i}", "label": "live"} for i in range(4)]
            + [{"file": f"p{i}", "label": "print"} for i in range(2)]
            + [{"file": f"r{i}", "label": "replay"} for i in range(2)])


def test_figures_count_refusals_and_acceptances():
    scores = {"l0": 0.99, "l1": 0.97, "l2": 0.5, "l3": None, "p0": 0.96, "p1": 0.1, "r0": None, "r1": 0.2}
    f = metrics.figures(_items(), scores, 0.95)
    assert f["bpcer"] == pytest.approx(0.5)  # l2 by score, l3 for too few frames
    assert (f["live_refused_score"], f["live_refused_frames"]) == (1, 1)
    assert f["apcer"]["print"]["apcer"] == pytest.approx(0.5)
    assert f["apcer"]["replay"]["apcer"] == 0.0  # an attack refused with an error is not accepted
    assert f["acer"] == pytest.approx(0.5)


def test_bpcer_threshold_keeps_every_live_clip_when_few():
    scores = {"l0": 0.99, "l1": 0.97, "l2": 0.5, "l3": 0.8}
    t = metrics.bpcer_threshold(_items(), scores, 0.02)
    assert t == 0.5
    assert metrics.figures(_items(), scores, t)["live_refused_score"] == 0


def test_synthetic_attacks_are_deterministic():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 80, 3), dtype=np.uint8) for _ in range(4)]
    for make in (synth_print, synth_replay):
        a, b = make(frames, 7), make(frames, 7)
        assert len(a) == 4 and all(np.array_equal(x, y) for x, y in zip(a, b))
        assert a[0].shape == frames[0].shape


def test_eval_skips_cleanly_without_shared(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tools.eval", "--shared", str(tmp_path / "nothing"),
                          "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "skipped" in out.stdout
