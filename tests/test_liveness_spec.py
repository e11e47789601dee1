import numpy as np
import pytest

from liveness_edge.config import load_config
from liveness_edge.errors import StartupError
from liveness_edge.liveness import LivenessModel, LivenessSpec, load_spec_file, spec_from_mapping
from liveness_edge.models import load_models
from media import ROOT


@pytest.fixture(scope="module")
def models():
    return load_models(load_config(ROOT / "config" / "liveness-edge.ini"), warm=False)


def test_tensor_follows_layout_colour_and_range(models):
    crops = np.zeros((2, 4, 4, 3), np.uint8)
    crops[..., 0] = 255  # pure red
    model = models.liveness.model
    nchw_bgr = LivenessModel(model, LivenessSpec(layout="NCHW", colour="BGR", value_range=(0, 255)), "x")
    t = nchw_bgr.tensor(crops)
    assert t.shape == (2, 3, 4, 4)
    assert (t[:, 2] == 255).all() and (t[:, 0] == 0).all()  # red moved to the last channel
    nhwc_rgb = LivenessModel(model, LivenessSpec(value_range=(-1, 1)), "x")
    t = nhwc_rgb.tensor(crops)
    assert t.shape == (2, 4, 4, 3) and (t[..., 0] == 1).all() and (t[..., 1] == -1).all()


def test_output_kinds():
    raw = np.array([[2.0, 0.0, -1.0]], np.float32)
    soft = LivenessModel.__new__(LivenessModel)
    soft.spec = LivenessSpec(output_kind="softmax-logits", live_index=0)
    assert soft._live_probability(raw)[0] == pytest.approx(np.exp(2) / (np.exp(2) + 1 + np.exp(-1)))
    soft.spec = LivenessSpec(output_kind="logit", live_index=2)
    assert soft._live_probability(raw)[0] == pytest.approx(1 / (1 + np.exp(1)))
    soft.spec = LivenessSpec(output_kind="probability", live_index=1)
    assert soft._live_probability(np.array([[0.2, 0.7, 0.1]]))[0] == pytest.approx(0.7)


@pytest.mark.parametrize("mapping, message", [
    ({"output": {"kind": "probability", "live-index": 0}, "input": {"layout": "CHW"}}, "input.layout"),
    ({"output": {"kind": "probability", "live-index": 0}, "input": {"colour": "YUV"}}, "input.colour"),
    ({"output": {"kind": "probability", "live-index": 0}, "input": {"range": [0]}}, "input.range"),
    ({"output": {"kind": "argmax", "live-index": 0}}, "output.kind"),
    ({"output": {"kind": "probability"}}, "output.live-index"),
    ({"output": {"kind": "probability", "live-index": 0}, "crop": {"scale": 9}}, "crop.scale"),
    ({}, "missing key 'output'"),
    # a section written as a single value instead of a mapping is named, not a traceback
    ({"output": 3}, "output is 3, expected a mapping"),
    ({"output": {"kind": "probability", "live-index": 0}, "input": "NHWC"}, "input is 'NHWC', expected a mapping"),
    ({"output": {"kind": "probability", "live-index": 0}, "crop": [2.7]}, "crop is \\[2.7\\], expected a mapping"),
    ({"output": {"kind": ["softmax"], "live-index": 0}}, "output.kind"),
])
def test_bad_spec_mappings_name_the_key(mapping, message):
    with pytest.raises(StartupError, match=message):
        spec_from_mapping(mapping, "spec.yaml")


def test_spec_that_does_not_fit_the_model_is_refused(models):
    model = models.liveness.model  # NHWC, one output
    with pytest.raises(StartupError, match="channels are at axis 1"):
        LivenessSpec(layout="NCHW").check(model, "spec.yaml")
    with pytest.raises(StartupError, match="live-index 3 is outside"):
        LivenessSpec(live_index=3).check(model, "spec.yaml")


def test_spec_file_resolves_the_model_next_to_it(tmp_path):
    (tmp_path / "m.yaml").write_text("model: my.tflite\ninput: {layout: NCHW, colour: BGR, range: [0, 255]}\n"
                                     "crop: {scale: 2.7, align: false, shrink-to-fit: true}\n"
                                     "output: {kind: softmax, live-index: 1}\n")
    path, spec, expected = load_spec_file(tmp_path / "m.yaml")
    assert path == tmp_path / "my.tflite" and expected is None
    assert spec == LivenessSpec("NCHW", "BGR", (0.0, 255.0), 2.7, False, True, "probability", 1)
    (tmp_path / "bad.yaml").write_text("model: my.tflite\nouptut: {}\n")
    with pytest.raises(StartupError, match="unknown key"):
        load_spec_file(tmp_path / "bad.yaml")
    (tmp_path / "sha.yaml").write_text("model: my.tflite\nsha256: abc\noutput: {kind: logit, live-index: 0}\n")
    with pytest.raises(StartupError, match="sha256 'abc', expected 64 hex digits"):
        load_spec_file(tmp_path / "sha.yaml")
    (tmp_path / "list.yaml").write_text("- model: my.tflite\n")
    with pytest.raises(StartupError, match="expected a mapping of keys"):
        load_spec_file(tmp_path / "list.yaml")
