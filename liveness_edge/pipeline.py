"""The one place that strings the stages together: decode -> detect -> select -> landmarks + quality -> liveness ->
encode -> cache.

Frames are processed as they are decoded, so a request holds one frame at a time (and the decoder's two ahead) plus
small face crops and, when an image is asked for (return_photo, return_normalized, return_detection), the best frame so
far. The stages know nothing of HTTP; this module knows nothing of HTTP either: it
returns a ``ClipResult`` or raises a typed error from ``errors``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Sequence

import cv2
import numpy as np

from .cache import DetectionCache, StoredDetection
from .cues import ClipCue, CueScore
from .config import Config
from .decode import Decoder, Frame, Prefetch, StreamInfo, codec_note, full_bgr, small_rgb, upright_size
from .detect import FaceBox
from .errors import MultipleFaces, NoFace, NotEnoughFrames
from .cues.registry import default_cues
from .fusion import load_fusion
from .landmarks import Landmarks
from .models import ModelSet
from .quality import Quality, assess
from .align import FaceWindow, crop

# Why a decoded frame was not selected; the keys are reported in errors and metrics.
DROP_REASONS = ("no_face", "multiple_faces", "small_face", "low_quality")
NORMALIZED_SIZE = 192
PREFETCH_FRAMES = 2  # decoded frames waiting for the models: overlap without holding many full frames


@dataclass(frozen=True)
class Options:
    return_photo: bool = False
    return_normalized: bool = False
    return_detection: bool = False
    return_frames: bool = False  # debug: per-frame scores and per-cue results in the answer


@dataclass(frozen=True)
class FaceSample:
    """A selected face: where it is, how good it is, and the crop the liveness model looks at."""

    frame_no: int
    frame_ts: float
    face: FaceBox
    bbox: tuple[int, int, int, int]  # left, top, right, bottom in original frame pixels, clipped
    quality: Quality
    landmarks: Landmarks
    liveness_crop: np.ndarray | None  # None when the fusion does not count the CNN (not run)


@dataclass(frozen=True)
class BestFace:
    liveness: float
    quality: float
    bbox: tuple[int, int, int, int]
    frame_no: int
    frame_ts: float
    detection_id: str | None = None
    photo_jpeg: bytes | None = None
    normalized_png: bytes | None = None


@dataclass(frozen=True)
class ClipResult:
    alive: bool
    average_liveness: float
    best_face: BestFace
    frames_decoded: int
    frames_selected: int
    dropped: dict[str, int]
    frame_scores: tuple[float, ...]  # fused liveness per selected frame
    frames: tuple[dict, ...] = ()  # per selected frame: frame_no, frame_ts, quality, cnn, liveness
    cues: tuple[CueScore, ...] = ()
    clip: dict | None = None  # with return_frames: what the decoder saw (container, codec, size, rate, length, note)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # the request's thread, adds up to its wall time
    decode_thread_seconds: dict[str, float] = field(default_factory=dict)  # overlapped with the stages above


class _Stopwatch:
    """Accumulates wall time per stage for the metrics' per-stage histograms and the benchmark's breakdown."""

    def __init__(self):
        self.totals: Counter[str] = Counter()
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.totals[stage] += now - self._last
        self._last = now


def _decode_and_downscale(decoder: Decoder, size: int, spent: Counter):
    """(frame, detector-sized RGB) pairs; runs in the decode thread, which alone writes ``spent``."""
    frames = decoder.frames()
    try:
        while True:
            start = time.perf_counter()
            frame = next(frames, None)
            decoded = time.perf_counter()
            if frame is None:
                return
            small = small_rgb(frame, size)
            spent["decode"] += decoded - start
            spent["downscale"] += time.perf_counter() - decoded
            yield frame, small
    finally:
        frames.close()


def _clip_info(info: StreamInfo) -> dict:
    """The clip as the decoder saw it, for the debug answer: an integrator's first question about a refusal."""
    clip = {"container": info.container, "codec": info.codec, "width": info.width, "height": info.height,
            "fps": round(info.fps, 3), "duration": None if info.duration is None else round(info.duration, 3)}
    note = codec_note(info.codec)
    return {**clip, "note": note} if note else clip


class Pipeline:
    def __init__(self, cfg: Config, models: ModelSet, cache: DetectionCache | None = None,
                 cue_factories: Sequence[Callable[[], ClipCue]] | None = None, fusion=None,
                 score_cnn: bool | None = None):
        self.cfg = cfg
        self.models = models
        self.cache = cache
        # Each factory call makes a fresh cue for one request.
        self.cue_factories = tuple(default_cues(cfg, models) if cue_factories is None else cue_factories)
        self.fusion = fusion or load_fusion(cfg, models)
        # Like a cue the fit dropped, a liveness CNN it gave no weight is not run (tools/eval asks for it anyway).
        self.score_cnn = self.fusion.counts_cnn if score_cnn is None else score_cnn

    def describe(self) -> dict:
        """What scores a clip: the fusion, whether the liveness CNN runs, and the clip cues that run."""
        return {"fusion": self.fusion.name, "cnn_run": self.score_cnn,
                "cues": [getattr(make, "name", getattr(make, "__name__", "?")) for make in self.cue_factories]}

    def run(self, body: bytes | BinaryIO, options: Options = Options()) -> ClipResult:
        cfg = self.cfg
        watch = _Stopwatch()
        samples: list[FaceSample] = []
        dropped: Counter[str] = Counter()
        best_frame: Frame | None = None
        best: FaceSample | None = None
        best_index = -1
        needs_images = options.return_photo or options.return_normalized or options.return_detection
        cues = [make() for make in self.cue_factories]
        detector_size = self.models.detector.input_size
        thread_spent: Counter[str] = Counter()
        with Decoder(body, cfg.limits, cfg.max_decoded_frames) as decoder:
            watch.lap("decode")
            # Decoding and the detector's downscale run one or two frames ahead in their own thread.
            decoded = _decode_and_downscale(decoder, detector_size, thread_spent)
            with Prefetch(decoded, depth=PREFETCH_FRAMES) as frames:
                for frame, small in frames:
                    watch.lap("decode")
                    sample, reason = self._examine(frame, small, watch)
                    if sample is None:
                        dropped[reason] += 1
                        continue
                    samples.append(sample)
                    for cue in cues:
                        cue.observe(frame, sample)
                    watch.lap("cues")
                    if best is None or sample.quality.score > best.quality.score:
                        # The frame itself (up to 3 MB at 1080p) is held only when an image of it is asked for.
                        best, best_index = sample, len(samples) - 1
                        best_frame = frame if needs_images else None
            frames_decoded = decoder.frames_decoded
            clip = _clip_info(decoder.info) if options.return_frames else None
            watch.lap("decode")
        if len(samples) < cfg.min_selected_frames:
            raise self._too_few(frames_decoded, len(samples), dropped)
        cnn = (self.models.liveness.scores(np.stack([s.liveness_crop for s in samples]),
                                           cfg.extraction_api.request_batch_size) if self.score_cnn else None)
        watch.lap("liveness")
        cue_scores = tuple(cue.result() for cue in cues)
        fused = self.fusion.combine(cnn, cue_scores, len(samples))
        watch.lap("fusion")
        scores = fused.frame_scores
        best_face = self._best_face(best, best_frame, float(scores[best_index]), options, watch)
        frames = tuple({"frame_no": s.frame_no, "frame_ts": s.frame_ts, "quality": round(s.quality.score, 6),
                        "cnn": None if c is None else round(float(c), 6), "liveness": round(float(f), 6)}
                       for s, c, f in zip(samples, [None] * len(samples) if cnn is None else cnn, scores)
                       ) if options.return_frames else ()
        return ClipResult(
            alive=fused.average >= cfg.liveness_threshold,
            average_liveness=fused.average,
            best_face=best_face,
            frames_decoded=frames_decoded,
            frames_selected=len(samples),
            dropped={reason: dropped.get(reason, 0) for reason in DROP_REASONS},
            frame_scores=tuple(float(s) for s in scores),
            frames=frames,
            cues=cue_scores,
            clip=clip,
            stage_seconds=dict(watch.totals),
            decode_thread_seconds=dict(thread_spent),
        )

    def _examine(self, frame: Frame, small: tuple[np.ndarray, float],
                 watch: _Stopwatch) -> tuple[FaceSample | None, str]:
        """Detect, select and assess the face in one frame; (sample, "") or (None, drop reason).

        ``small`` is the frame downscaled for the detector and its scale, made in the decode thread.
        """
        cfg, models = self.cfg, self.models
        small, scale = small
        faces = models.detector.detect(small, 1.0 / scale)
        watch.lap("detect")
        if not faces:
            return None, "no_face"
        if len(faces) > 1 and cfg.mf_selector == "reject":
            return None, "multiple_faces"
        face = max(faces, key=lambda f: f.area)
        if min(face.width, face.height) < cfg.quality.min_face_px:
            return None, "small_face"
        landmark_roi = models.landmarks.roi(face)
        liveness_roi = models.liveness.roi(frame, face)
        window = FaceWindow.from_frame(frame, [(landmark_roi, models.landmarks.size),
                                               (liveness_roi, max(models.liveness.size))])
        watch.lap("crop")
        landmarks, aligned = models.landmarks.run(window, face)
        watch.lap("landmarks")
        # Quality looks at the face itself: the centre of the 1.5x landmark crop.
        side = aligned.shape[0]
        quality = assess(face, aligned[side // 6 : side - side // 6, side // 6 : side - side // 6], landmarks.presence)
        watch.lap("quality")
        if quality.score < cfg.quality.min_score:
            return None, "low_quality"
        # The window above spans the liveness ROI whether or not the CNN runs: the landmarks (and so every cue) must
        # see the same pixels in the daemon as in tools/eval, which always runs it.
        liveness_crop = models.liveness.cut(window, liveness_roi) if self.score_cnn else None
        watch.lap("crop")
        width, height = upright_size(frame)
        return FaceSample(frame.index, round(frame.ts, 6), face, face.clipped(width, height), quality, landmarks,
                          liveness_crop), ""

    def _too_few(self, decoded: int, selected: int, dropped: Counter) -> Exception:
        need = self.cfg.min_selected_frames
        counts = {"frames_decoded": decoded, "frames_selected": selected,
                  "min_selected_frames": need, "dropped": {r: dropped.get(r, 0) for r in DROP_REASONS}}
        why = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in dropped.most_common() if n)
        text = f"{selected} of {decoded} decoded frames are usable, {need} needed" + (f" ({why})" if why else "")
        if selected == 0 and dropped.get("no_face", 0) == decoded:
            return NoFace(f"no face found: {text}", **counts)
        if self.cfg.mf_selector == "reject" and selected + dropped.get("multiple_faces", 0) >= need:
            return MultipleFaces(f"too many frames show several faces (mf-selector: reject): {text}", **counts)
        return NotEnoughFrames(f"not enough usable frames: {text}", **counts)

    def _best_face(self, best: FaceSample, frame: Frame | None, liveness: float, options: Options,
                   watch: _Stopwatch) -> BestFace:
        photo = normalized = detection_id = None
        if options.return_photo:
            ok, buf = cv2.imencode(".jpg", full_bgr(frame),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.cfg.fullframe_jpeg_quality])
            photo = buf.tobytes() if ok else None
        if options.return_normalized or options.return_detection:
            aligned = crop(frame, best.landmarks.roi, NORMALIZED_SIZE)  # recut once, only for the best face
            ok, buf = cv2.imencode(".png", cv2.cvtColor(aligned, cv2.COLOR_RGB2BGR))
            normalized = buf.tobytes() if ok else None
        watch.lap("encode")
        if options.return_detection and self.cache is not None:
            detection_id = self.cache.put(StoredDetection.new(
                bbox=best.bbox, quality=best.quality.score, liveness=liveness, frame_no=best.frame_no,
                frame_ts=best.frame_ts, normalized_png=normalized or b""))
            watch.lap("cache")
        return BestFace(
            liveness=liveness, quality=best.quality.score, bbox=best.bbox, frame_no=best.frame_no,
            frame_ts=best.frame_ts, detection_id=detection_id, photo_jpeg=photo,
            normalized_png=normalized if options.return_normalized else None,
        )
