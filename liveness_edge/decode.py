"""Request body -> decoded frames, within the configured limits (PyAV).

Frames are yielded one at a time, in order, and decoding stops after ``max_frames``: nothing reads the rest of a long
clip. Limits are checked twice: from the container's stream metadata before the first frame is decoded, and again on
every decoded frame (a file can lie about its size, rate or length), so a violation stops decoding before it costs
memory.

Full frames are never converted to RGB on the hot path: ``small_rgb`` lets libswscale scale and convert in one pass
for the detector, and ``region_rgb`` converts only a face-sized window of the YUV planes for the crops.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from .config import Limits
from .errors import BadVideo, UnsupportedMediaType, VideoLimitsExceeded

log = logging.getLogger(__name__)

#: Content types accepted on POST /v1/liveness. The container is always sniffed by FFmpeg's probe, whatever the type
#: says; the list names what kiosks, phones and IP cameras send: MP4/MOV, WebM/MKV, MPEG-TS (RTSP and HLS
#: recordings), AVI (often MJPEG), 3GP, MPEG-PS, and raw H.264/H.265 elementary streams.
ACCEPTED_TYPES = frozenset(
    {
        "video/mp4",
        "video/x-m4v",
        "video/quicktime",
        "video/webm",
        "video/x-matroska",
        "video/mp2t",
        "video/x-msvideo",
        "video/avi",
        "video/msvideo",
        "video/3gpp",
        "video/3gpp2",
        "video/mpeg",
        "video/h264",
        "video/h265",
        "application/octet-stream",
    }
)

# Codecs the liveness cues are known to misread (docs/accuracy.md, "Clips compressed harder or smaller"): measured on
# MJPEG copies of the real clips, `texture` reads JPEG's compression as a screen's pixel grid (likely because JPEG
# quantises the off-axis DCT coefficients much harder than the on-axis ones), so most live people are refused.
# Decoded all the same; the log says so once and the debug answer (return_frames) in its ``clip``.
MISREAD_CODECS = {"mjpeg": "MJPEG"}
_warned_codecs: set[str] = set()

# Frame rates are rationals in containers (30000/1001, 1350/61): allow rounding noise above the configured limit.
_FPS_TOLERANCE = 1.01
_YUV420 = {"yuv420p", "yuvj420p"}
MAX_PIXELS_SLACK = 2  # FFmpeg's max_pixels: twice the limits' pixel count (see Decoder.__init__)
# Packets read per frame wanted before giving up: real streams hold about one packet per frame (a VP8 encoder's
# hidden alt-ref frames add a few percent), and a camera recording may start up to a few seconds before a keyframe.
PACKETS_PER_FRAME, MIN_PACKET_BUDGET = 8, 300


def check_content_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ACCEPTED_TYPES:
        return
    if media.startswith("multipart/"):
        # The commonest integration slip (curl -F, an HTML form): say what to do instead of listing types.
        raise UnsupportedMediaType(
            f"Content-Type {media!r}: send the clip itself as the request body (curl --data-binary @clip.mp4 "
            "-H 'Content-Type: video/mp4'), not a form", param="Content-Type")
    raise UnsupportedMediaType(
        f"Content-Type {media or '(none)'!r} is not accepted; send the clip as one of "
        + ", ".join(sorted(ACCEPTED_TYPES)),
        param="Content-Type",
    )


@dataclass(frozen=True)
class Frame:
    """One decoded frame. ``index`` is 0-based in decode order; ``ts`` is its presentation time in seconds
    from the first decoded frame."""

    index: int
    ts: float
    width: int
    height: int
    video_frame: av.VideoFrame
    rotation: int  # degrees counter-clockwise the frame must be turned to be upright (PyAV's display-matrix angle)
    # Shared by every frame of one clip: libswscale's context (filter tables) is built once, not per frame.
    reformatter: VideoReformatter

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


@dataclass(frozen=True)
class StreamInfo:
    container: str
    codec: str
    width: int
    height: int
    fps: float
    duration: float | None


def _frame_bounds_ok(width: int, height: int, limits: Limits) -> bool:
    # Orientation-agnostic: a portrait 1080x1920 phone clip has the same pixel budget as landscape 1920x1080.
    long_limit = max(limits.video_width_px, limits.video_height_px)
    short_limit = min(limits.video_width_px, limits.video_height_px)
    return max(width, height) <= long_limit and min(width, height) <= short_limit


def _check_size(width: int, height: int, limits: Limits) -> None:
    if not _frame_bounds_ok(width, height, limits):
        param = "limits.video-width-px" if max(width, height) > max(limits.video_width_px, limits.video_height_px) \
            else "limits.video-height-px"
        raise VideoLimitsExceeded(
            f"frame size {width}x{height} exceeds the limit of {limits.video_width_px}x{limits.video_height_px} "
            "(either orientation)",
            param=param,
        )


def codec_note(codec: str) -> str | None:
    """What a caller should know about clips in ``codec``, if anything (the debug answer and the log say it)."""
    if codec not in MISREAD_CODECS:
        return None
    return (f"{MISREAD_CODECS[codec]}: the texture cue reads its compression as a screen, so most live people will "
            "be refused; send H.264, H.265, VP8 or VP9 at a good bitrate (README, Accuracy)")


def _warn_once_about(codec: str) -> None:
    if codec in MISREAD_CODECS and codec not in _warned_codecs:
        _warned_codecs.add(codec)
        log.warning("clips arrive as %s. Said once per start.", codec_note(codec))


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _stream_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


class Decoder:
    """Opens a clip and yields at most ``max_frames`` frames; use as a context manager so the demuxer is closed."""

    def __init__(self, body: bytes | BinaryIO, limits: Limits, max_frames: int):
        self.limits = limits
        self.max_frames = max_frames
        self.frames_decoded = 0
        self.reformatter = VideoReformatter()
        source = io.BytesIO(body) if isinstance(body, (bytes, bytearray, memoryview)) else body
        # FFmpeg allocates (and, probing the file, fills) a frame before the limits can be checked on it: a file that
        # declares 320x240 and carries a 16000x16000 picture took 800 MB. max_pixels stops that inside FFmpeg, for
        # the probe and for the decoder, with slack for the aligned sizes it checks (a 1080x1920 clip is 1088 wide
        # to it); the exact limits are checked on every frame that comes out.
        self._max_pixels = {"max_pixels": str(MAX_PIXELS_SLACK * limits.video_width_px * limits.video_height_px)}
        self.packet_budget = max(MIN_PACKET_BUDGET, PACKETS_PER_FRAME * max_frames)
        try:
            self.container = av.open(source, mode="r", metadata_errors="ignore", options=self._max_pixels)
        except (av.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
            raise BadVideo(f"the body is not a decodable video: {_reason(exc)}") from None
        try:
            if not self.container.streams.video:
                raise BadVideo("the body has no video stream")
            self.stream = self.container.streams.video[0]
            if self.stream.codec_context is None:  # a corrupt codec tag: PyAV has no decoder for the stream
                raise BadVideo("the video stream's codec is unknown or has no decoder")
            self.stream.codec_context.options = dict(self._max_pixels)
            self.info = self._check_metadata()
            _warn_once_about(self.stream.codec_context.name)
        except BaseException:
            self.container.close()
            raise

    def __enter__(self) -> "Decoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    def _check_metadata(self) -> StreamInfo:
        ctx = self.stream.codec_context
        width, height = ctx.width, ctx.height
        fps = _stream_fps(self.stream)
        duration = _stream_duration(self.container, self.stream)
        limits = self.limits
        if width and height:
            _check_size(width, height, limits)
        if fps > limits.video_fps * _FPS_TOLERANCE:
            raise VideoLimitsExceeded(
                f"frame rate {fps:.3g} fps exceeds the limit of {limits.video_fps:g} fps", param="limits.video-fps"
            )
        if duration is not None and duration > limits.video_length_sec:
            raise VideoLimitsExceeded(
                f"duration {duration:.3g} s exceeds the limit of {limits.video_length_sec:g} s",
                param="limits.video-length-sec",
            )
        return StreamInfo(self.container.format.name, ctx.name, width, height, fps, duration)

    def frames(self) -> Iterator[Frame]:
        """Decode in order; stop after max_frames. A decode error after some good frames ends the clip there."""
        stream = self.stream
        time_base = stream.time_base
        first_ts: float | None = None
        try:
            for video_frame in self._decoded(stream):
                ts = float(video_frame.pts * time_base) if video_frame.pts is not None else None
                if ts is None:
                    ts = self.frames_decoded / self.info.fps if self.info.fps else 0.0
                first_ts = ts if first_ts is None else first_ts
                # Seconds from the clip's first frame: MPEG-TS/PS clips from cameras start at an arbitrary clock
                # value (often hours in), which means nothing to the caller.
                ts -= first_ts
                self._check_frame(video_frame, ts)
                rotation = int(getattr(video_frame, "rotation", 0) or 0) % 360
                if video_frame.format.name not in _YUV420:
                    # 10-bit HDR phone HEVC, 4:2:2 MJPEG, 4:4:4, RGB: converted once here (2-3 ms at 1080p, in the
                    # decode thread), so every face and cue window is cut from 8-bit I420 planes like any other
                    # frame's instead of converting the whole frame for each window (4-6 ms a window).
                    video_frame = self.reformatter.reformat(video_frame, format="yuv420p")
                frame = Frame(self.frames_decoded, ts, video_frame.width, video_frame.height, video_frame, rotation,
                              self.reformatter)
                self.frames_decoded += 1
                yield frame
                if self.frames_decoded >= self.max_frames:
                    return
            if self.frames_decoded == 0:  # a video track with no frames in it: not a clip, rather than "no face"
                raise BadVideo("the video stream holds no frames")
        except av.FFmpegError as exc:
            if self.frames_decoded == 0:
                raise BadVideo(f"no frame could be decoded: {_reason(exc)}") from None
            log.info("decode stopped after %d frames: %s", self.frames_decoded, _reason(exc))

    def _decoded(self, stream) -> Iterator[av.VideoFrame]:
        """The stream's frames, from at most ``packet_budget`` packets. A decoder may take packets that show nothing
        (VP8's hidden frames, P-frames before any keyframe): 10 MB of them cost minutes of CPU for no frame, so the
        work per request is bounded by packets, not only by the frames that come out."""
        for packets, packet in enumerate(self.container.demux(stream), start=1):
            if packets > self.packet_budget:
                if self.frames_decoded == 0:
                    raise BadVideo(f"no frame came out of the first {self.packet_budget} packets of the video stream")
                log.info("decode stopped after %d packets (%d frames)", self.packet_budget, self.frames_decoded)
                return
            yield from packet.decode()

    def _check_frame(self, video_frame, elapsed: float) -> None:
        _check_size(video_frame.width, video_frame.height, self.limits)
        if elapsed > self.limits.video_length_sec:
            raise VideoLimitsExceeded(
                f"frame at {elapsed:.3g} s is past the length limit of {self.limits.video_length_sec:g} s",
                param="limits.video-length-sec",
            )
        # A file may declare 30 fps and carry 10,000: after a few frames, the timestamps tell the real rate.
        count = self.frames_decoded
        if count >= 5 and elapsed > 0 and count / elapsed > self.limits.video_fps * 1.5:
            raise VideoLimitsExceeded(
                f"frame timestamps show about {count / elapsed:.3g} fps, over the limit of "
                f"{self.limits.video_fps:g} fps",
                param="limits.video-fps",
            )
        if count >= 5 and elapsed == 0:
            raise VideoLimitsExceeded("frames carry no advancing timestamps", param="limits.video-fps")


def _reason(exc: Exception) -> str:
    # FFmpeg errors read "[Errno N] Invalid data found when processing input: '<none>'": keep the words only.
    text = (getattr(exc, "strerror", None) or str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


# ---------------------------------------------------------------------------------------------------------------------
# Pixel access. Coordinates are in the upright frame (rotation applied).


def _upright_rgb(frame: Frame) -> np.ndarray:
    rgb = frame.video_frame.to_ndarray(format="rgb24")
    return _rotate(rgb, frame.rotation)


def _rotate(image: np.ndarray, rotation: int) -> np.ndarray:
    # PyAV's rotation is counter-clockwise degrees to apply for display, as FFmpeg's display matrix.
    turns = {90: 1, 180: 2, 270: 3}.get(rotation, 0)
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def upright_size(frame: Frame) -> tuple[int, int]:
    if frame.rotation in (90, 270):
        return frame.height, frame.width
    return frame.width, frame.height


def small_rgb(frame: Frame, max_side: int) -> tuple[np.ndarray, float]:
    """The upright frame scaled so its longer side is ``max_side``, as RGB; returns (image, scale small/original)."""
    width, height = upright_size(frame)
    scale = max_side / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    if frame.rotation in (90, 270):
        w_src, h_src = h, w
    else:
        w_src, h_src = w, h
    small = frame.reformatter.reformat(frame.video_frame, width=w_src, height=h_src, format="rgb24",
                                       interpolation="AREA").to_ndarray()
    return _rotate(small, frame.rotation), scale


def region_rgb(frame: Frame, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """RGB pixels of the upright frame inside [x0,x1) x [y0,y1) (clipped to the frame), converting only that window."""
    window, ox, oy, _, _ = window_rgb(frame, x0, y0, x1, y1)
    width, height = upright_size(frame)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0, 3), np.uint8)
    return window[y0 - oy : y1 - oy, x0 - ox : x1 - ox]


def region_luma(frame: Frame, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """uint8 luma of [x0,x1) x [y0,y1) of the upright frame (clipped): for I420 frames a slice of the Y plane, with no
    conversion at all; otherwise the grey of ``region_rgb``."""
    width, height = upright_size(frame)
    x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), np.uint8)
    vf = frame.video_frame
    if vf.format.name in _YUV420:
        if not frame.rotation:
            return _plane(vf, 0, height, width)[y0:y1, x0:x1]
        # A phone's portrait clip is stored turned: cut the window from the stored Y plane and turn only the window
        # (converting and turning the whole frame cost ~14 ms at 1080p, for every cue that asked).
        sx0, sy0, sx1, sy1, turns = _stored_rect(frame, x0, y0, x1, y1)
        stored = _plane(vf, 0, frame.height, frame.width)[sy0:sy1, sx0:sx1]
        return np.ascontiguousarray(np.rot90(stored, turns))
    return cv2.cvtColor(np.ascontiguousarray(region_rgb(frame, x0, y0, x1, y1)), cv2.COLOR_RGB2GRAY)


def _stored_rect(frame: Frame, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int, int]:
    """The rectangle of the stored (not yet turned) picture that ``_rotate`` turns into the upright [x0,x1) x
    [y0,y1), and the number of quarter turns (np.rot90's k) that makes it upright."""
    width, height = frame.width, frame.height  # stored size
    turns = {90: 1, 180: 2, 270: 3}.get(frame.rotation, 0)
    if turns == 1:  # upright (row i, col j) = stored (row j, col width-1-i)
        return width - y1, x0, width - y0, x1, 1
    if turns == 2:  # upright (i, j) = stored (height-1-i, width-1-j)
        return width - x1, height - y1, width - x0, height - y0, 2
    if turns == 3:  # upright (i, j) = stored (height-1-j, i)
        return y0, height - x1, y1, height - x0, 3
    return x0, y0, x1, y1, 0


def window_rgb(frame: Frame, x0: int, y0: int, x1: int, y1: int,
               shrink: float = 1.0) -> tuple[np.ndarray, int, int, float, float]:
    """A window of the upright frame covering [x0,x1) x [y0,y1) (clipped), scaled down by about ``shrink`` >= 1.

    Returns (rgb, ox, oy, sx, sy): window pixel (u, v) shows frame point (ox + u / sx, oy + v / sy). For I420 frames
    the YUV planes are cut and area-averaged before the colour conversion, so a large face costs a small conversion;
    a turned frame (a phone's portrait clip) is cut in its stored orientation and only the window is turned.
    """
    width, height = upright_size(frame)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(width, x1), min(height, y1)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0, 3), np.uint8), x0, y0, 1.0, 1.0
    vf = frame.video_frame
    if vf.format.name not in _YUV420:
        return _shrunk(_upright_rgb(frame)[y0:y1, x0:x1], shrink, x0, y0)
    sx0, sy0, sx1, sy1, turns = _stored_rect(frame, x0, y0, x1, y1)
    cut = _i420_window(vf, frame.width, frame.height, sx0, sy0, sx1, sy1, shrink)
    if cut is None:  # the frame is smaller than the aligned window (or odd-sized at that edge)
        return _shrunk(_upright_rgb(frame)[y0:y1, x0:x1], shrink, x0, y0)
    rgb, ox, oy, sx, sy, w, h = cut
    if not turns:
        return rgb, ox, oy, sx, sy
    # Pixel edges map to pixel edges: stored x in [ox, ox + w) is upright row width_stored - x, and so on.
    rgb = np.ascontiguousarray(np.rot90(rgb, turns))
    if turns == 1:
        return rgb, oy, frame.width - ox - w, sy, sx
    if turns == 2:
        return rgb, frame.width - ox - w, frame.height - oy - h, sx, sy
    return rgb, frame.height - oy - h, ox, sy, sx


def _i420_window(vf, width: int, height: int, x0: int, y0: int, x1: int, y1: int,
                 shrink: float) -> tuple[np.ndarray, int, int, float, float, int, int] | None:
    """RGB of the stored I420 picture's [x0,x1) x [y0,y1), area-averaged by the whole part of ``shrink``:
    (rgb, ox, oy, sx, sy, w, h) with (w, h) the stored pixels covered; None when the aligned cut would pass the edge."""
    # Even-aligned start, height a multiple of 4 so the chroma rows pack into OpenCV's I420 layout.
    ax0, ay0 = x0 & ~1, y0 & ~1
    w = ((x1 - ax0) + 1) & ~1
    h = ((y1 - ay0) + 3) & ~3
    # A window at the right or bottom edge would pass it once rounded up: start it a little earlier instead (the
    # caller maps pixels by the returned origin), so edge faces stay on this path too.
    if ax0 + w > width:
        ax0 = (width - w) & ~1
    if ay0 + h > height:
        ay0 = (height - h) & ~1
    if ax0 < 0 or ay0 < 0 or ax0 + w < x1 or ay0 + h < y1:
        return None  # the frame is smaller than the rounded window, or an odd size leaves the edge pixel out
    y_plane = _plane(vf, 0, height, width)[ay0 : ay0 + h, ax0 : ax0 + w]
    chroma = (slice(ay0 // 2, (ay0 + h) // 2), slice(ax0 // 2, (ax0 + w) // 2))
    u_plane = _plane(vf, 1, (height + 1) // 2, (width + 1) // 2)[chroma]
    v_plane = _plane(vf, 2, (height + 1) // 2, (width + 1) // 2)[chroma]
    out_w, out_h = w, h
    factor = int(shrink)  # whole factors take OpenCV's fast block-averaging path; fractional ones are ~10x slower
    if factor >= 2 and w >= 2 * factor and h >= 4 * factor:
        w, h = w // (2 * factor) * 2 * factor, h // (4 * factor) * 4 * factor  # trims < 4 factor px at the edge
        out_w, out_h = w // factor, h // factor
        y_plane = cv2.resize(y_plane[:h, :w], (out_w, out_h), interpolation=cv2.INTER_AREA)
        u_plane = cv2.resize(u_plane[: h // 2, : w // 2], (out_w // 2, out_h // 2), interpolation=cv2.INTER_AREA)
        v_plane = cv2.resize(v_plane[: h // 2, : w // 2], (out_w // 2, out_h // 2), interpolation=cv2.INTER_AREA)
    packed = np.concatenate([y_plane, u_plane.reshape(-1, out_w), v_plane.reshape(-1, out_w)])
    rgb = cv2.cvtColor(packed, cv2.COLOR_YUV2RGB_I420)
    return rgb, ax0, ay0, out_w / w, out_h / h, w, h


def _shrunk(rgb: np.ndarray, shrink: float, ox: int, oy: int) -> tuple[np.ndarray, int, int, float, float]:
    factor = int(shrink)
    if factor < 2:
        return rgb, ox, oy, 1.0, 1.0
    h, w = rgb.shape[:2]
    out_w, out_h = max(1, w // factor), max(1, h // factor)
    return cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA), ox, oy, out_w / w, out_h / h


def _plane(vf, index: int, rows: int, cols: int) -> np.ndarray:
    plane = vf.planes[index]
    buf = np.frombuffer(plane, np.uint8)
    return buf.reshape(-1, plane.line_size)[:rows, :cols]


def full_bgr(frame: Frame) -> np.ndarray:
    """The whole upright frame as BGR (only for return_photo: one frame per request)."""
    return cv2.cvtColor(_upright_rgb(frame), cv2.COLOR_RGB2BGR)


class Prefetch:
    """Run a frame generator in its own thread, ``depth`` items ahead of the consumer.

    FFmpeg decodes and libswscale scales with the GIL released, so on a two-core box decoding frame n+1 overlaps
    the models running on frame n. ``depth`` bounds how many decoded frames wait in memory. The generator is driven,
    and closed, only by the producer thread; errors it raises reach the consumer in order.
    """

    _END = object()

    def __init__(self, iterable, depth: int = 2):
        self._queue: "queue.Queue" = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(iterable,), name="decode", daemon=True)
        self._thread.start()

    def _produce(self, iterable) -> None:
        iterator = iter(iterable)
        try:
            for item in iterator:
                while not self._stop.is_set():
                    try:
                        self._queue.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    break
        except BaseException as exc:  # handed to the consumer, which raises it in its own thread
            item = None  # the error's traceback keeps this frame: not the last decoded picture with it
            self._queue.put((self._END, exc))
            return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()
        self._queue.put((self._END, None))

    def __iter__(self):
        while True:
            item, error = self._queue.get()
            if item is self._END:
                if error is not None:
                    try:
                        raise error
                    finally:
                        # The traceback refers to this frame: a local still holding the error would make a cycle
                        # that keeps the producer's frames (decoded pictures) in memory until the next gc run.
                        error = None
                return
            yield item

    def close(self) -> None:
        """Stop the producer and wait for it (before the container it reads is closed)."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def __enter__(self) -> "Prefetch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
