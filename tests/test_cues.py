"""Unit tests of the clip cues on synthetic inputs (no models, no ../shared)."""

import math

import numpy as np
import pytest

from liveness_edge.cues.blink import BlinkCue, MotionCue, find_blink
from liveness_edge.cues.planarity import residuals
from liveness_edge.cues.texture import spectrum_stats


def _rot(yaw, pitch):
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    return np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])


def _project(points3d, yaw, pitch, focal=600.0, depth=500.0):
    p = points3d @ _rot(yaw, pitch).T
    p[:, 2] += depth
    return focal * p[:, :2] / p[:, 2:3]


@pytest.fixture
def face_cloud():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-60, 60, (60, 2))
    z = -40 * np.exp(-(xy ** 2).sum(1) / (2 * 35 ** 2))  # a bump: nose/cheeks nearer than the ears
    return np.column_stack([xy, z])


def test_planarity_separates_a_plane_from_a_head(face_cloud):
    flat = face_cloud.copy()
    flat[:, 2] = 0
    rng = np.random.default_rng(1)
    ratios = {}
    for name, cloud in (("plane", flat), ("head", face_cloud)):
        ref = _project(cloud, 0, 0)
        cur = _project(cloud, math.radians(15), math.radians(8)) + rng.normal(0, 0.05, (len(cloud), 2))
        res_h, res_s = residuals(ref, cur)
        ratios[name] = res_h / res_s
    assert ratios["plane"] < 0.3, ratios
    assert ratios["head"] > 0.56, ratios


def test_planarity_motion_is_tiny_without_out_of_plane_rotation(face_cloud):
    ref = _project(face_cloud, 0, 0)
    cur = ref * 1.02 + [3.0, -2.0]  # a similarity: shift + zoom, nothing to decide on
    _, res_s = residuals(ref, cur)
    iod = 60.0
    assert res_s / iod < 0.02


class _Sample:
    def __init__(self, points):
        self.landmarks = type("L", (), {"points": points})()


def _eye_points(openness: float, mouth: float = 0.0) -> np.ndarray:
    pts = np.zeros((468, 3), np.float32)
    for (p1, p2, p3, p4, p5, p6), cx in (((33, 160, 158, 133, 153, 144), 0.0), ((263, 387, 385, 362, 380, 373), 60.0)):
        pts[p1, :2] = (cx - 15, 0)
        pts[p4, :2] = (cx + 15, 0)
        for up, low, x in ((p2, p6, cx - 5), (p3, p5, cx + 5)):
            pts[up, :2] = (x, -openness * 15)
            pts[low, :2] = (x, openness * 15)
    pts[33, :2], pts[263, :2] = (-15, 0), (75, 0)
    pts[13, :2], pts[14, :2] = (30, 60), (30, 60 + mouth * 90)
    pts[105, :2], pts[159, :2], pts[334, :2], pts[386, :2] = (0, -25), (0, -5), (60, -25), (60, -5)
    return pts


def test_blink_detected_on_a_dip_and_reopening():
    series = np.array([0.3] * 8 + [0.2, 0.05, 0.1, 0.28] + [0.3] * 8)
    seen, level, dip = find_blink(series)
    assert seen and dip < 0.6


@pytest.mark.parametrize("series", [
    [0.3] * 20,  # open all along
    [0.3] * 10 + [0.05] * 10,  # closing and staying closed: not a blink
    [0.05] * 20,  # eyes never visible open
    list(0.3 + 0.01 * np.sin(np.arange(20))),  # jitter
])
def test_blink_abstains_without_a_blink(series):
    cue = BlinkCue()
    for value in series:
        cue.observe(None, _Sample(_eye_points(value)))
    assert cue.result().value is None


def test_blink_cue_votes_live_on_a_blink():
    cue = BlinkCue()
    for value in [0.3] * 8 + [0.15, 0.02, 0.1, 0.3] + [0.3] * 8:
        cue.observe(None, _Sample(_eye_points(value)))
    res = cue.result()
    assert res.value is not None and res.value > 0.5


def test_micro_motion_abstains_on_a_still_face_and_votes_live_on_talking():
    still, talking = MotionCue(), MotionCue()
    for i in range(20):
        still.observe(None, _Sample(_eye_points(0.3, 0.0)))
        talking.observe(None, _Sample(_eye_points(0.3, 0.1 * (1 + math.sin(i)))))
    assert still.result().value is None
    assert talking.result().value > 0.5


def _skin(n, seed=0):
    """Isotropic texture with a steeply falling (1/f^3 power) spectrum, like skin at camera resolution."""
    f = np.fft.fftfreq(n)
    r = np.sqrt(f[None, :] ** 2 + f[:, None] ** 2)
    spectrum = np.fft.fft2(np.random.default_rng(seed).normal(0, 1, (n, n))) / (r + 0.02) ** 1.5
    skin = np.real(np.fft.ifft2(spectrum))
    return 20 + (skin - skin.min()) / np.ptp(skin) * 200


def test_texture_peak_is_high_for_a_pixel_grid_and_near_zero_for_skin_of_any_size():
    y, x = np.mgrid[0:96, 0:96]
    skin = _skin(96)
    grid = skin + 25 * np.sin(2 * np.pi * 0.31 * x) * np.sin(2 * np.pi * 0.29 * y)
    peak_skin, _ = spectrum_stats(skin.astype(np.uint8))
    peak_grid, _ = spectrum_stats(np.clip(grid, 0, 255).astype(np.uint8))
    assert peak_grid > peak_skin + 1.0
    # 0 = "no more peaked than noise", whatever the patch size the face allows (48-128 px)
    for n in (48, 64, 128):
        noise = np.clip(128 + 20 * np.random.default_rng(n).normal(0, 1, (n, n)), 0, 255).astype(np.uint8)
        assert abs(spectrum_stats(noise)[0]) < 0.35


def test_texture_peak_does_not_mistake_a_sharp_camera_for_a_grid():
    # A sharper image has more high-frequency energy but no narrow peak: the statistic is per radius, not the slope.
    soft = _skin(96, seed=1)
    sharp = soft + np.random.default_rng(2).normal(0, 6, soft.shape)
    assert abs(spectrum_stats(np.clip(sharp, 0, 255).astype(np.uint8))[0]
               - spectrum_stats(np.clip(soft, 0, 255).astype(np.uint8))[0]) < 0.5



def test_texture_peak_ignores_the_cameras_own_row_alternation_but_not_a_grid_near_it():
    # Every other row brighter (an interlaced or line-paired sensor, demosaicing): the camera's pattern, not a screen.
    y, x = np.mgrid[0:96, 0:96]
    skin = _skin(96, seed=3)
    rows = skin + 12 * np.where(y % 2 == 0, 1.0, -1.0)
    peak_skin, _ = spectrum_stats(skin.astype(np.uint8))
    peak_rows, _ = spectrum_stats(np.clip(rows, 0, 255).astype(np.uint8))
    assert abs(peak_rows - peak_skin) < 0.3
    # a display grid just off that axis (tilted a few degrees) still counts
    tilted = skin + 12 * np.cos(2 * np.pi * (0.47 * y + 0.06 * x))
    assert spectrum_stats(np.clip(tilted, 0, 255).astype(np.uint8))[0] > peak_skin + 1.0

# --- planarity end to end on rendered pixels (tracking, frame skipping, window scaling) ------------------------------

def _render(texture: np.ndarray, yaw_deg: float, depth: np.ndarray) -> np.ndarray:
    """The texture as seen after a yaw about the image centre (orthographic): x' = x cos + z sin (z: depth map)."""
    h, w = texture.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    xc = xx - w / 2
    src_x = (xc - depth * s) / c + w / 2
    import cv2
    return cv2.remap(texture, src_x, yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _planarity_on(monkeypatch, depth_amp: float, yaw_step: float = 2.0, noise: float = 0.0, **cue_args) -> "object":
    import cv2

    from liveness_edge.cues import planarity

    size = 320
    rng = np.random.default_rng(3)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (size, size)).astype(np.float32), (0, 0), 2.0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    depth = depth_amp * np.exp(-((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (2 * 45.0 ** 2))
    frames = [(_render(texture, yaw_step * k, depth) + rng.normal(0, noise, (size, size))).clip(0, 255).astype(np.uint8)
              for k in range(16)]

    def fake_luma_scaled(frame, x0, y0, x1, y1, out_w, out_h):
        return cv2.resize(frame[max(0, y0):y1, max(0, x0):x1], (out_w, out_h), interpolation=cv2.INTER_AREA)

    monkeypatch.setattr(planarity, "luma_scaled", fake_luma_scaled)
    points = np.zeros((478, 3), np.float32)
    points[:, :2] = rng.uniform(size / 2 - 70, size / 2 + 70, (478, 2))
    points[33, :2], points[263, :2] = (size / 2 - 35, size / 2 - 20), (size / 2 + 35, size / 2 - 20)
    face = type("F", (), {"center": (size / 2, size / 2), "width": 170.0, "height": 170.0})()
    sample = type("S", (), {"face": face, "landmarks": type("L", (), {"points": points})()})()
    cue = planarity.PlanarityCue(**cue_args)
    for frame in frames:
        cue.observe(frame, sample)
    return cue.result()


def test_planarity_cue_tracks_a_turning_plane_as_flat(monkeypatch):
    result = _planarity_on(monkeypatch, depth_amp=0.0)
    assert result.value is not None and result.value < 0.5, result


def test_planarity_cue_sees_a_turning_relief_as_3d_and_abstains(monkeypatch):
    from liveness_edge.cues import planarity

    result = _planarity_on(monkeypatch, depth_amp=60.0)
    # a 3D head is not evidence of life (a replay shows one too): measured, but no vote
    assert result.value is None and result.detail["ratio"] > planarity.CENTRE, result
    assert "3D head" in result.detail["why"]


@pytest.mark.parametrize("depth_amp", [0.0, 60.0])
def test_planarity_cue_never_calls_a_still_face_flat_from_sensor_noise(monkeypatch, depth_amp):
    # A still person (or a still photo) in a noisy camera: whatever the tracking noise makes of it, it is not the
    # low homography/similarity ratio of a turning sheet, so the cue abstains instead of voting "attack".
    from liveness_edge.cues import planarity

    result = _planarity_on(monkeypatch, depth_amp=depth_amp, yaw_step=0.0, noise=4.0)
    assert result.value is None, result
    # Even with no motion gate at all, noise alone reads as "3D" (a ratio near 1), never as a flat sheet.
    ungated = _planarity_on(monkeypatch, depth_amp=depth_amp, yaw_step=0.0, noise=4.0, min_motion=0.0)
    assert ungated.value is None and ungated.detail["ratio"] > planarity.CENTRE + 0.3, ungated


# --- bezel --------------------------------------------------------------------------------------------------------

def _scene(rect: bool, door: bool = False) -> np.ndarray:
    import cv2
    rng = np.random.default_rng(5)
    img = cv2.GaussianBlur(rng.uniform(90, 140, (160, 160)).astype(np.float32), (0, 0), 6).astype(np.uint8)
    cv2.ellipse(img, (80, 80), (24, 30), 0, 0, 360, 200, -1)  # the face, ~59 px box at the centre
    if rect:
        cv2.rectangle(img, (30, 20), (130, 145), 30, 2)  # a dark bezel around it
    if door:
        cv2.line(img, (20, 10), (20, 150), 30, 2)  # one straight edge to the left: a door frame
    return img


def test_bezel_finds_a_frame_around_the_face_and_not_a_door():
    from liveness_edge.cues.bezel import find_sides

    face_px = 160 / 2.7
    framed = find_sides(_scene(rect=True), face_px)
    assert {"left", "right"} <= set(framed) and {"top", "bottom"} <= set(framed), framed
    assert find_sides(_scene(rect=False), face_px) == {}
    assert set(find_sides(_scene(rect=False, door=True), face_px)) == {"left"}


def test_bezel_cue_is_one_sided(monkeypatch):
    from liveness_edge.cues import bezel

    def run(img):
        monkeypatch.setattr(bezel, "luma_scaled", lambda *a: img)
        cue = bezel.BezelCue(every=1)
        face = type("F", (), {"center": (80.0, 80.0), "width": 59.0, "height": 59.0})()
        for _ in range(6):
            cue.observe(None, type("S", (), {"face": face})())
        return cue.result()

    assert run(_scene(rect=True)).value == bezel.FRAMED_VALUE
    assert run(_scene(rect=False, door=True)).value is None  # abstains: no penalty for an ordinary room


# --- surround -----------------------------------------------------------------------------------------------------

def _frame(grey: np.ndarray, index: int):
    """A real decoded-frame object (I420, the decoder's usual format) holding ``grey`` as its picture."""
    import av
    from av.video.reformatter import VideoReformatter

    from liveness_edge.decode import Frame

    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    return Frame(index, index / 25, grey.shape[1], grey.shape[0], vf, 0, VideoReformatter())


def _moving_face_clip(face_moves_scene: bool, textured: bool = True, step: float = 1.5, frames: int = 12,
                      hair: float = 0.0):
    """Frames and face samples of a face moving in front of a background (a live person before a fixed camera),
    or of the whole scene moving with the face (a held sheet or screen filling the view)."""
    import cv2

    from liveness_edge.detect import FaceBox
    from liveness_edge.cues.surround import FACE_POINTS

    rng = np.random.default_rng(7)
    size, side, centre = 480, 80.0, np.array([240.0, 240.0])
    if textured:
        back = cv2.GaussianBlur(rng.uniform(0, 255, (size, size)).astype(np.float32), (0, 0), 2)
        back = cv2.normalize(back, None, 20, 235, cv2.NORM_MINMAX).astype(np.uint8)
    else:
        back = (120 + rng.normal(0, 1.0, (size, size))).astype(np.uint8)  # a plain wall and sensor noise
    offsets = rng.uniform(-0.5, 0.5, (len(FACE_POINTS), 2)) * side  # the face's rigid points, about its centre
    hair_texture = cv2.normalize(cv2.GaussianBlur(rng.uniform(0, 255, (size, size)).astype(np.float32), (0, 0), 1.5),
                                 None, 10, 90, cv2.NORM_MINMAX).astype(np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    hair_shape = ((xx - side * 0.6) / (side * 0.6)) ** 2 + ((yy - (hair * side + side / 2)) / (hair * side + side / 2 + 1e-9)) ** 2 <= 1
    out = []
    for t in range(frames):
        shift = np.array([step * t, 0.6 * step * t])
        scene = back
        if face_moves_scene:
            scene = cv2.warpAffine(back, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (size, size),
                                   borderMode=cv2.BORDER_REFLECT)
        img = scene.copy()
        c = centre + shift
        if hair:  # textured hair (or a hat) reaching ``hair`` face sides above the face box, moving with the head
            top = int(c[1] - side / 2 - hair * side)
            patch = hair_texture[: int(c[1]) - top, : int(side * 1.2)]
            x = int(c[0] - side * 0.6)
            region = img[top:top + patch.shape[0], x:x + patch.shape[1]]
            region[:] = np.where(hair_shape[: patch.shape[0], : patch.shape[1]], patch, region)
        cv2.ellipse(img, (int(c[0]), int(c[1])), (int(side * 0.4), int(side * 0.5)), 0, 0, 360, 180, -1)
        points = np.zeros((468, 3), np.float32)
        points[list(FACE_POINTS), :2] = c + offsets
        face = FaceBox(c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2, 0.9, np.zeros((6, 2)))
        sample = type("S", (), {"face": face, "landmarks": type("L", (), {"points": points})()})()
        out.append((_frame(img, t), sample))
    return out


def _surround_on(clip):
    from liveness_edge.cues.surround import SurroundCue

    cue = SurroundCue(every=1)
    for frame, sample in clip:
        cue.observe(frame, sample)
    return cue.result()


def test_surround_fires_when_the_scene_moves_with_the_face():
    from liveness_edge.cues.surround import FOLLOWS_VALUE

    result = _surround_on(_moving_face_clip(face_moves_scene=True))
    assert result.value == FOLLOWS_VALUE, result
    assert result.detail["follow"] > 0.9


def test_surround_abstains_for_a_face_moving_before_a_still_background():
    result = _surround_on(_moving_face_clip(face_moves_scene=False))
    assert result.value is None and result.detail["follow"] < 0.1, result
    assert "does not move with the face" in result.detail["why"]


@pytest.mark.parametrize("kwargs, why", [
    ({"step": 0.0}, "too few frames in which the face had moved"),  # a still print and a still person look alike
    ({"textured": False}, "nothing to track"),  # a plain wall: specks of noise are not followed at random
])
def test_surround_abstains_when_it_cannot_tell(kwargs, why):
    result = _surround_on(_moving_face_clip(face_moves_scene=True, **kwargs))
    assert result.value is None and why in result.detail["why"], result


def test_surround_leaves_hair_to_the_head_before_a_plain_wall():
    # Hair moves with the head; before a plain wall it is the only texture around the face. Hair reaching 0.5 face
    # sides above the face box (a live clip here reaches 0.3-0.45) must not read as a held sheet.
    result = _surround_on(_moving_face_clip(face_moves_scene=False, textured=False, hair=0.5))
    assert result.value is None, result


def test_surround_skips_frames_whose_landmarks_are_not_numbers():
    from liveness_edge.cues.surround import FOLLOWS_VALUE

    clip = _moving_face_clip(face_moves_scene=True)
    clip[4][1].landmarks.points[33, 1] = np.nan  # one frame's mesh failed on one point
    clip[0][1].landmarks.points[263, 0] = np.inf  # and the first frame's: seeding waits for the next
    assert _surround_on(clip).value == FOLLOWS_VALUE
