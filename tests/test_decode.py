from fractions import Fraction

import numpy as np
import pytest

from liveness_edge.config import Limits
from liveness_edge.decode import Decoder, check_content_type, full_bgr, region_rgb, small_rgb
from liveness_edge.errors import BadVideo, UnsupportedMediaType, VideoLimitsExceeded
from media import blank_frames, encode, face_clip, face_frames

LIMITS = Limits(video_size=10485760, video_length_sec=60, video_fps=30, video_width_px=1920, video_height_px=1080)


def decode_all(clip: bytes, limits: Limits = LIMITS, max_frames: int = 30):
    with Decoder(clip, limits, max_frames) as decoder:
        frames = list(decoder.frames())
        return frames, decoder


def test_stops_after_max_decoded_frames_of_a_longer_clip():
    clip = encode(blank_frames(90, 160, 120))
    frames, decoder = decode_all(clip, max_frames=30)
    assert len(frames) == 30 and decoder.frames_decoded == 30
    assert [f.index for f in frames] == list(range(30))
    assert frames[1].ts == pytest.approx(1 / 30, abs=1e-3)


def test_short_clip_yields_all_its_frames():
    frames, _ = decode_all(encode(blank_frames(7, 160, 120)))
    assert len(frames) == 7


@pytest.mark.parametrize("size", [(1920, 1080), (1080, 1920)])
def test_full_hd_is_accepted_in_either_orientation(size):
    frames, decoder = decode_all(encode(blank_frames(2, *size)))
    assert (decoder.info.width, decoder.info.height) == size


@pytest.mark.parametrize("width, height, param", [(2048, 1080, "limits.video-width-px"),
                                                  (1920, 1200, "limits.video-height-px")])
def test_too_large_frames_are_refused_from_metadata(width, height, param):
    with pytest.raises(VideoLimitsExceeded) as err:
        decode_all(encode(blank_frames(2, width, height)))
    assert err.value.param == param


def test_too_many_fps_is_refused():
    with pytest.raises(VideoLimitsExceeded) as err:
        decode_all(encode(blank_frames(10, 160, 120), fps=60))
    assert err.value.param == "limits.video-fps"


def test_ntsc_rate_is_within_a_30_fps_limit():
    frames, decoder = decode_all(encode(blank_frames(5, 160, 120), fps=Fraction(30000, 1001)))
    assert len(frames) == 5


def test_too_long_is_refused_from_metadata():
    limits = Limits(10485760, 2, 30, 1920, 1080)
    with pytest.raises(VideoLimitsExceeded) as err:
        decode_all(encode(blank_frames(90, 160, 120), fps=30), limits)
    assert err.value.param == "limits.video-length-sec"


def test_lying_timestamps_are_refused_while_decoding():
    # Declares 25 fps but the timestamps advance 1/10000 s per frame: the real rate is caught on decoded frames.
    clip = encode(blank_frames(12, 160, 120), fps=25, container="matroska", time_base=Fraction(1, 10000),
                  pts_step=1)
    with pytest.raises(VideoLimitsExceeded) as err:
        decode_all(clip)
    assert err.value.param == "limits.video-fps"


@pytest.mark.parametrize("body", [b"", b"x", b"not a video at all" * 100, bytes(range(256)) * 50])
def test_garbage_is_bad_video(body):
    with pytest.raises(BadVideo):
        decode_all(body)


def test_truncated_streamable_clip_keeps_the_frames_before_the_cut():
    clip = face_clip(frames=30, container="matroska")
    frames, _ = decode_all(clip[: len(clip) // 2])
    assert 5 <= len(frames) < 30


def test_truncated_mp4_without_its_index_is_bad_video():
    clip = face_clip(frames=30)  # PyAV's mp4 muxer writes the moov index last
    with pytest.raises(BadVideo, match="not a decodable video: Invalid data"):
        decode_all(clip[: len(clip) * 2 // 3])


def test_region_conversion_matches_the_full_frame_conversion():
    clip = face_clip(frames=1, width=642, height=482)
    frames, _ = decode_all(clip)
    frame = frames[0]
    full = full_bgr(frame)[..., ::-1].astype(int)
    for x0, y0, x1, y1 in [(0, 0, 100, 80), (17, 33, 301, 250), (501, 401, 642, 482), (123, 7, 124, 9)]:
        window = region_rgb(frame, x0, y0, x1, y1).astype(int)
        assert window.shape == (y1 - y0, x1 - x0, 3)
        assert np.abs(window - full[y0:y1, x0:x1]).mean() < 2.0


def test_windows_at_the_frame_edge_are_cut_from_the_planes(monkeypatch):
    # A face at the right or bottom edge must not cost a whole-frame conversion per window (4-6 ms at 1080p).
    from liveness_edge import decode

    frame = decode_all(face_clip(frames=1, width=642, height=482))[0][0]
    full = full_bgr(frame)[..., ::-1].astype(int)
    monkeypatch.setattr(decode, "_upright_rgb", lambda _frame: pytest.fail("converted the whole frame"))
    for x0, y0, x1, y1 in [(501, 401, 642, 482), (600, 0, 642, 100), (0, 470, 90, 482), (641, 481, 642, 482)]:
        window = region_rgb(frame, x0, y0, x1, y1).astype(int)
        assert window.shape == (y1 - y0, x1 - x0, 3)
        assert np.abs(window - full[y0:y1, x0:x1]).mean() < 2.0


def test_ten_bit_clips_are_cut_like_eight_bit_ones(monkeypatch):
    # HDR phone clips (HEVC Main 10) decode to 10-bit frames: converted once when decoded, then every window is cut
    # from 8-bit I420 planes, and shows the same picture as the 8-bit encode of the same frames.
    from liveness_edge import decode
    from liveness_edge.decode import region_luma

    source = face_frames(2, 640, 480)
    eight = decode_all(encode(source, codec="libx264", pix_fmt="yuv420p"))[0][0]
    ten = decode_all(encode(source, codec="libx264", pix_fmt="yuv420p10le"))[0][0]
    assert ten.video_frame.format.name == "yuv420p"
    monkeypatch.setattr(decode, "_upright_rgb", lambda _frame: pytest.fail("converted the whole frame"))
    for x0, y0, x1, y1 in [(200, 100, 440, 380), (0, 0, 64, 64)]:
        assert np.abs(region_luma(ten, x0, y0, x1, y1).astype(int)
                      - region_luma(eight, x0, y0, x1, y1).astype(int)).mean() < 3.0
        assert np.abs(region_rgb(ten, x0, y0, x1, y1).astype(int)
                      - region_rgb(eight, x0, y0, x1, y1).astype(int)).mean() < 4.0


def test_small_rgb_keeps_aspect():
    frames, _ = decode_all(face_clip(frames=1, width=640, height=480))
    small, scale = small_rgb(frames[0], 192)
    assert small.shape == (144, 192, 3) and scale == pytest.approx(0.3)


@pytest.mark.parametrize("value", ["video/mp4", "video/webm", "video/quicktime", "video/x-matroska",
                                   "application/octet-stream", "Video/MP4; codecs=avc1", "video/mp2t",
                                   "video/x-msvideo", "video/3gpp", "video/h264", "video/webm;codecs=vp8"])
def test_accepted_content_types(value):
    check_content_type(value)


# What cameras, phones and browsers send, as they send it: container x codec (pixel format).
CAMERA_FORMATS = [
    ("mp4", "libx264", "yuv420p"),      # phones, most kiosks
    ("mp4", "libx265", "yuv420p"),      # newer IP cameras (H.265 in MP4)
    ("mpegts", "libx264", "yuv420p"),   # RTSP / HLS recordings
    ("avi", "mjpeg", "yuvj420p"),       # USB webcams, older IP cameras
    ("3gp", "libx264", "yuv420p"),      # older phones
    ("h264", "libx264", "yuv420p"),     # a raw Annex B elementary stream, no container
    ("webm", "libvpx", "yuv420p"),      # browsers' MediaRecorder (VP8)
    ("webm", "libvpx-vp9", "yuv420p"),  # browsers' MediaRecorder (VP9)
    ("mp4", "libsvtav1", "yuv420p"),    # AV1
    ("mpeg", "mpeg2video", "yuv420p"),  # MPEG-PS from older DVRs
    ("avi", "mpeg4", "yuv420p"),        # MPEG-4 Part 2 (older cameras and DVRs)
]


@pytest.mark.parametrize("container,codec,pix_fmt", CAMERA_FORMATS, ids=lambda v: str(v))
def test_camera_formats_decode_with_their_timestamps(container, codec, pix_fmt):
    frames, decoder = decode_all(encode(blank_frames(12, 320, 240), container=container, codec=codec,
                                        pix_fmt=pix_fmt))
    assert len(frames) == 12 and decoder.frames_decoded == 12
    assert full_bgr(frames[0]).shape == (240, 320, 3)
    # A raw elementary stream has no timestamps of its own; FFmpeg's 25 fps default stands in for them.
    step = 1 / 25 if container == "h264" else 1 / 30
    assert [round(f.ts, 3) for f in frames[:3]] == [0, round(step, 3), round(2 * step, 3)]


@pytest.mark.parametrize("value", [None, "", "text/plain", "image/jpeg", "multipart/form-data"])
def test_refused_content_types(value):
    with pytest.raises(UnsupportedMediaType):
        check_content_type(value)


def test_a_form_upload_is_told_to_send_the_clip_as_the_body():
    with pytest.raises(UnsupportedMediaType) as err:
        check_content_type("multipart/form-data; boundary=x")
    assert "send the clip itself as the request body" in err.value.desc and err.value.param == "Content-Type"


def test_decode_thread_reports_its_own_decode_and_downscale_time():
    from collections import Counter

    from liveness_edge.pipeline import _decode_and_downscale

    spent = Counter()
    with Decoder(encode(blank_frames(12, 320, 240)), LIMITS, 10) as decoder:
        pairs = list(_decode_and_downscale(decoder, 128, spent))
    assert len(pairs) == 10
    small, scale = pairs[0][1]
    assert max(small.shape[:2]) <= 128 and 0 < scale <= 1
    assert spent["decode"] > 0 and spent["downscale"] > 0


def test_mjpeg_is_decoded_and_the_log_warns_once_that_it_is_misread(caplog, monkeypatch):
    import liveness_edge.decode as decode

    monkeypatch.setattr(decode, "_warned_codecs", set())
    mjpeg = encode(blank_frames(3, 160, 120), container="avi", codec="mjpeg", pix_fmt="yuvj420p")
    with caplog.at_level("WARNING", logger="liveness_edge.decode"):
        for _ in range(3):
            assert len(decode_all(mjpeg)[0]) == 3
        decode_all(encode(blank_frames(3, 160, 120)))  # H.264: nothing to say
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "clips arrive as MJPEG: the texture cue" in warnings[0] and "H.264" in warnings[0]


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_luma_windows_of_a_turned_frame_are_the_upright_pictures(rotation):
    # A phone's portrait clip is stored turned with a rotation tag; the cues' grey windows must show the upright
    # picture, cut from the stored luma without converting the whole frame.
    import av
    from av.video.reformatter import VideoReformatter

    from liveness_edge.decode import Frame, region_luma, upright_size

    rng = np.random.default_rng(rotation)
    stored = rng.integers(16, 236, (48, 80), dtype=np.uint8)  # height 48, width 80, as the decoder stores it
    vf = av.VideoFrame.from_ndarray(np.dstack([stored] * 3), format="rgb24").reformat(format="yuv420p")
    y_plane = np.frombuffer(vf.planes[0], np.uint8).reshape(-1, vf.planes[0].line_size)[:48, :80]
    frame = Frame(0, 0.0, 80, 48, vf, rotation, VideoReformatter())
    upright = np.rot90(y_plane, {90: 1, 180: 2, 270: 3}.get(rotation, 0))
    width, height = upright_size(frame)
    assert upright.shape == (height, width)
    for x0, y0, x1, y1 in ((0, 0, width, height), (3, 5, 17, 40), (width - 9, height - 20, width, height),
                           (-4, -4, 10, 12)):
        window = region_luma(frame, x0, y0, x1, y1)
        assert np.array_equal(window, upright[max(y0, 0):y1, max(x0, 0):x1]), (x0, y0, x1, y1)
    # the same picture, the same way up, as the colour path shows it (grey of RGB: full range, so compare shapes)
    grey = region_rgb(frame, 3, 5, 17, 40).astype(np.float64).mean(axis=2)
    assert np.corrcoef(grey.ravel(), region_luma(frame, 3, 5, 17, 40).ravel().astype(np.float64))[0, 1] > 0.99


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("shrink", [1.0, 2.0, 3.0])
def test_colour_windows_of_a_turned_frame_show_the_upright_picture_where_they_say(rotation, shrink):
    # The crops the models see come from window_rgb: on a turned frame it must show the upright picture, and its
    # (ox, oy, sx, sy) must say where each window pixel lies in the upright frame.
    import av
    from av.video.reformatter import VideoReformatter

    from liveness_edge.decode import Frame, _upright_rgb, upright_size, window_rgb

    base = np.full((120, 160, 3), 60, np.uint8)
    vf0 = av.VideoFrame.from_ndarray(base, format="rgb24").reformat(format="yuv420p")
    frame0 = Frame(0, 0.0, 160, 120, vf0, rotation, VideoReformatter())
    width, height = upright_size(frame0)
    # a bright square at a known upright place, drawn into the stored picture through the inverse turn
    upright = np.full((height, width, 3), 60, np.uint8)
    upright[30:42, 50:62] = 230
    stored = np.ascontiguousarray(np.rot90(upright, -{90: 1, 180: 2, 270: 3}.get(rotation, 0)))
    vf = av.VideoFrame.from_ndarray(stored, format="rgb24").reformat(format="yuv420p")
    frame = Frame(0, 0.0, 160, 120, vf, rotation, VideoReformatter())
    assert np.abs(_upright_rgb(frame).astype(int) - upright).mean() < 3  # the reference path agrees

    rgb, ox, oy, sx, sy = window_rgb(frame, 21, 13, 97, 83, shrink)
    assert rgb.shape[0] == pytest.approx((83 - 13) * sy, abs=4 / shrink + 4)
    assert rgb.shape[1] == pytest.approx((97 - 21) * sx, abs=4 / shrink + 4)
    bright = rgb.mean(axis=2) > 145
    rows, cols = np.nonzero(bright)
    centre_x = ox + (cols.mean() + 0.5) / sx
    centre_y = oy + (rows.mean() + 0.5) / sy
    assert centre_x == pytest.approx(56.0, abs=1.0) and centre_y == pytest.approx(36.0, abs=1.0)
    if shrink == 1.0:  # unshrunk, it is the reference path's picture
        reference = _upright_rgb(frame)[oy:oy + rgb.shape[0], ox:ox + rgb.shape[1]]
        assert np.abs(reference.astype(int) - rgb).mean() < 3


def test_a_video_track_without_frames_is_bad_video():
    # A container whose video track holds no frames (an audio-only recording that declares a camera track): not a
    # clip, so BAD_VIDEO rather than "no face in 0 frames".
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        video = out.add_stream("mpeg4", rate=30)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = out.add_stream("pcm_s16le", rate=8000)
        audio.layout = "mono"
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        samples.sample_rate = 8000
        for packet in audio.encode(samples):
            out.mux(packet)
    with pytest.raises(BadVideo, match="holds no frames"):
        decode_all(buf.getvalue())


def _mjpeg_avi(jpegs: list[bytes], width: int = 320, height: int = 240) -> bytes:
    """An AVI of the given JPEG pictures as they are, under a header that declares width x height."""
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        for i, data in enumerate(jpegs):
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 30)
            out.mux(packet)
    return buf.getvalue()


def test_a_picture_far_over_the_limits_is_refused_inside_ffmpeg(tmp_path):
    # A file that declares 320x240 and then carries a 6000x6000 4:4:4 JPEG (a 108 MB picture): FFmpeg must refuse
    # it before allocating it (max_pixels), not hand it over for the per-frame check. The clip ends at that picture.
    import subprocess
    import sys

    import cv2

    small = cv2.imencode(".jpg", np.full((240, 320, 3), 128, np.uint8))[1].tobytes()
    huge = cv2.imencode(".jpg", np.full((6000, 6000, 3), 128, np.uint8),
                        [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])[1].tobytes()
    path = tmp_path / "bomb.avi"
    path.write_bytes(_mjpeg_avi([small] * 3 + [huge] + [small] * 3))
    frames, _ = decode_all(path.read_bytes())
    assert [(f.width, f.height) for f in frames] == [(320, 240)] * 3
    # Measured in a fresh process: decoding it does not cost the picture's 108 MB.
    probe = ("import resource, sys; from liveness_edge.config import Limits; from liveness_edge.decode import Decoder\n"
             f"d = Decoder(open({str(path)!r}, 'rb').read(), Limits(10485760, 60, 30, 1920, 1080), 30)\n"
             "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "n = sum(1 for _ in d.frames())\n"
             "print(n, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60).stdout.split()
    assert out[0] == "3" and int(out[1]) < 50, out  # MB the decoding added


def test_packets_that_show_no_frame_are_bounded():
    # VP8 frames with show_frame cleared are decoded in full and output nothing: 10 MB of them took minutes of CPU
    # for one answer. The decoder reads at most packet_budget packets of the stream, whatever comes out of them.
    import io
    import struct

    import av

    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = 160, 120, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, 30), 30
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "auto-alt-ref": "0"}
    packets = []
    for i, rgb in enumerate(blank_frames(8, 160, 120)):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = i
        packets += [bytes(p) for p in enc.encode(frame)]
    packets += [bytes(p) for p in enc.encode(None)]
    key, inter = packets[0], packets[1]
    hidden = bytes([inter[0] & ~0x10]) + inter[1:]  # the frame header's show_frame bit cleared
    records = [key] + [hidden] * 1000 + packets[1:]  # then the shown frames a normal clip would have
    ivf = io.BytesIO()
    ivf.write(b"DKIF" + struct.pack("<HH4sHHIIII", 0, 32, b"VP80", 160, 120, 30, 1, len(records), 0))
    for i, data in enumerate(records):
        ivf.write(struct.pack("<IQ", len(data), i) + data)
    with Decoder(ivf.getvalue(), LIMITS, 30) as decoder:
        frames = list(decoder.frames())
        assert decoder.packet_budget == 300
    assert len(frames) == 1  # the keyframe; the shown frames after the 1000 hidden ones were never reached
