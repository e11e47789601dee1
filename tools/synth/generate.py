"""Synthetic presentation attacks made from live clips, with fixed seeds (tools/synth).

For every live clip in ../shared/data this writes two kinds of attack clip, VARIANTS renderings of each (different
seeds: another still, hand motion, screen...), to a git-ignored cache (default .cache/synth/):

- ``synthetic-print``: ONE still frame of the clip "printed" (paper gamut: lifted blacks, compressed whites, slight
  desaturation and warm tint; paper grain; white margin; optional cylindrical bend) and held in front of the camera
  with hand-held 3D motion: the sheet is a plane (or, for about half of them, a sheet bent into a cylinder about its
  vertical axis) rotated and translated in 3D and projected by a pinhole camera, over a blurred room background. A
  flat sheet's frames are homographies of the still; a bent sheet's are not (it is drawn as 32 flat strips).
- ``synthetic-replay``: the clip itself played on a display that is re-filmed: the frames are resampled to the
  display's pixel grid and rendered as RGB sub-pixel stripes with dark gaps, then warped to the camera with a
  hand-held homography WITHOUT anti-aliasing (the grid aliases into moire, as a real re-capture does), display gamma
  and black level, a bluish white point, a moving specular glare, and a black bezel with the room around it.

Both are H.264-encoded like a phone or webcam upload. The same seed gives the same clip (source = the live clip's
file: cross-validation keeps a live clip and its synthetic attacks in the same fold). ../shared is never written.

    python -m tools.synth.generate [--shared ../shared] [--out .cache/synth] [--frames 40]
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import math
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
VERSION = 8  # bump when the rendering or encoding changes: cached clips are regenerated
# The random draws (which still, which motion, which bend...) stay those of SEED_VERSION across rendering fixes, so a
# fix changes how an attack is drawn and not which attack it is. (5: a bent print is a real cylinder in 3D; it was an
# image pre-warp under one homography, i.e. still a plane. 6-8: reproducible encoding: one x264 thread,
# no macroblock tree.)
SEED_VERSION = 4


def read_frames(path: Path, count: int) -> tuple[list[np.ndarray], float]:
    """Up to ``count`` upright BGR frames and the frame rate."""
    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        for frame in container.decode(stream):
            rotation = int(getattr(frame, "rotation", 0) or 0) % 360
            image = frame.to_ndarray(format="bgr24")
            if rotation:  # rotation = degrees clockwise to make upright
                image = np.ascontiguousarray(np.rot90(image, k=-rotation // 90))
            frames.append(image)
            if len(frames) >= count:
                break
    return frames, min(max(fps, 10.0), 30.0)


def write_clip(path: Path, frames: list[np.ndarray], fps: float, crf: int = 23, mjpeg_q: int | None = None) -> None:
    """H.264 in MP4 at ``crf``; or, with ``mjpeg_q``, MJPEG in AVI at that fixed quantiser (2 best .. 31; a USB
    webcam's or an older IP camera's stream)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    width, height = width - width % 2, height - height % 2
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), "w", format="avi" if mjpeg_q else "mp4") as container:
        rate = Fraction(round(fps * 1000), 1000)
        if mjpeg_q:
            stream = container.add_stream("mjpeg", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
            stream.options = {"qmin": str(mjpeg_q), "qmax": str(mjpeg_q)}
            stream.codec_context.bit_rate = 10 ** 9  # the quantiser, not a bitrate, sets the quality
        else:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            # The synthetic attacks must be the same clips on every machine and run, so x264 runs reproducibly: one
            # thread, lookahead included (with more, the bytes depend on thread timing; codec_context.thread_count
            # alone did not stop that), and no macroblock-tree rate control (with it, the same frames encoded
            # differently from run to run even on one thread, on the replay clips). CRF, B-frames and adaptive
            # quantisation stay on.
            stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1",
                              "x264-params": "threads=1:lookahead-threads=1:mbtree=0"}
        for image in frames:
            out = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:height, :width]), format="bgr24")
            for packet in stream.encode(out):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)


# --- hand-held motion: a smooth random walk of a plane's 3D pose, projected by a pinhole camera -------------------

def hand_motion(rng: np.random.Generator, n: int, yaw_deg: float, pitch_deg: float, shift: float) -> np.ndarray:
    """(n, 6) smooth pose tracks: yaw, pitch, roll (radians), dx, dy (fraction of frame), dz (relative depth)."""
    t = np.linspace(0, 1, n)
    tracks = []
    for amp in (math.radians(yaw_deg), math.radians(pitch_deg), math.radians(4), shift, shift, 0.08):
        phase, freq, freq2 = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.6), rng.uniform(2, 4)
        jitter = 0.15 * np.sin(2 * np.pi * freq2 * t + rng.uniform(0, 6))
        tracks.append(amp * (np.sin(2 * np.pi * freq * t + phase) + jitter))
    return np.stack(tracks, axis=1)


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch), math.cos(roll), math.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def sheet_surface(points: np.ndarray, aspect: float, bend: float) -> np.ndarray:
    """(N, 3) positions of (N, 2) sheet points (unit square) on a sheet 1 wide and ``aspect`` high, centred at the
    origin: flat for bend 0, else bent about its vertical axis into a cylinder whose arc spans 4 x |bend| radians
    (bend 0.25 -> 1 rad), bulging towards the camera for bend > 0. Arc length is kept: the paper does not stretch."""
    arc = points[:, 0] - 0.5
    y = (points[:, 1] - 0.5) * aspect
    if bend == 0.0:
        return np.stack([arc, y, np.zeros_like(arc)], axis=1)
    radius = 1.0 / (4.0 * abs(bend))
    x = radius * np.sin(arc / radius)
    z = -math.copysign(1.0, bend) * radius * (1.0 - np.cos(arc / radius))  # camera looks along +z
    return np.stack([x, y, z], axis=1)


def project_sheet(points: np.ndarray, pose: np.ndarray, out_w: int, out_h: int, cover: float, aspect: float,
                  bend: float = 0.0) -> np.ndarray:
    """Map (N, 2) sheet points (unit square, [0,1]^2) to frame pixels for one pose; the sheet is 1 x ``aspect``."""
    focal = 1.2 * max(out_w, out_h)
    depth = focal / (cover * out_w)  # at rest the sheet's width covers ``cover`` of the frame width
    pts = sheet_surface(points, aspect, bend) @ rotation(*pose[:3]).T
    pts[:, 0] += pose[3]
    pts[:, 1] += pose[4]
    pts[:, 2] += depth * (1 + pose[5])
    return np.stack([focal * pts[:, 0] / pts[:, 2] + out_w / 2, focal * pts[:, 1] / pts[:, 2] + out_h / 2], axis=1)


def shade_bend(sheet: np.ndarray, bend: float) -> np.ndarray:
    """A bent sheet's columns face the light at different angles: shade them by their surface angle."""
    if bend == 0.0:
        return sheet
    w = sheet.shape[1]
    angle = (np.arange(w, dtype=np.float32) - w / 2) / w * 4 * abs(bend)  # surface angle of each column (rad)
    shade = 0.85 + 0.15 * np.cos(angle * (1 if bend > 0 else -1) - 0.3)
    return np.clip(sheet.astype(np.float32) * shade[None, :, None], 0, 255).astype(np.uint8)


BEND_FACETS = 32  # a bent sheet is drawn as this many flat vertical strips (each under its own homography)


def warp_sheet(image: np.ndarray, pose: np.ndarray, out_w: int, out_h: int, cover: float,
               interpolation: int, bend: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``image`` (the sheet) into the camera frame at ``pose``; (image, mask). A flat sheet is one homography; a
    bent one is BEND_FACETS strips of the cylinder, each warped by the homography of its own four corners, so its
    points do NOT move by one homography (as a real bent print's do not)."""
    h, w = image.shape[:2]
    if bend == 0.0:
        corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)
        dst = project_sheet(corners, pose, out_w, out_h, cover, h / w)
        H = cv2.getPerspectiveTransform((corners * [w, h]).astype(np.float32), dst.astype(np.float32))
        warped = cv2.warpPerspective(image, H, (out_w, out_h), flags=interpolation)
        mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), H, (out_w, out_h), flags=cv2.INTER_LINEAR)
        return warped, mask
    out = np.zeros((out_h, out_w) + image.shape[2:], np.float32)
    mask = np.zeros((out_h, out_w), np.float32)
    for k in range(BEND_FACETS):
        s0, s1 = k / BEND_FACETS, (k + 1) / BEND_FACETS
        corners = np.array([[s0, 0], [s1, 0], [s1, 1], [s0, 1]], np.float64)
        dst = project_sheet(corners, pose, out_w, out_h, cover, h / w, bend)
        src = corners * [w, h]
        # Warp only into the strip's bounding box in the frame (32 full-frame warps a frame would be slow).
        x0, y0 = np.clip(np.floor(dst.min(0)) - 2, 0, [out_w, out_h]).astype(int)
        x1, y1 = np.clip(np.ceil(dst.max(0)) + 2, 0, [out_w, out_h]).astype(int)
        if x1 <= x0 or y1 <= y0:
            continue
        H = cv2.getPerspectiveTransform(src.astype(np.float32), (dst - [x0, y0]).astype(np.float32))
        # The strip's own columns (one pixel wider on each side so neighbouring strips meet without a seam).
        strip = np.zeros((h, w), np.uint8)
        strip[:, max(0, int(s0 * w) - 1):min(w, int(math.ceil(s1 * w)) + 1)] = 255
        size = (int(x1 - x0), int(y1 - y0))
        part = cv2.warpPerspective(image, H, size, flags=interpolation).astype(np.float32)
        alpha = cv2.warpPerspective(strip, H, size, flags=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        weight = alpha[..., None] if part.ndim == 3 else alpha
        region = (slice(y0, y1), slice(x0, x1))
        out[region] = out[region] * (1 - weight) + part * weight
        mask[region] = np.maximum(mask[region], alpha)
    # ``out`` is blended over black; un-blend it so the caller's composite() blends it over the room exactly once.
    coverage = np.maximum(mask, 1e-6)
    out = out / (coverage[..., None] if out.ndim == 3 else coverage)
    return np.clip(out, 0, 255).astype(np.uint8), (mask * 255).astype(np.uint8)


def room_background(rng: np.random.Generator, frame: np.ndarray) -> np.ndarray:
    """A plausible room behind the attack: the clip's own scene, blurred, shifted and re-lit."""
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (max(8, w // 16), max(8, h // 16)), interpolation=cv2.INTER_AREA)
    small = np.roll(small, (rng.integers(-3, 4), rng.integers(-3, 4)), axis=(0, 1))
    back = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    back = back * rng.uniform(0.6, 0.9) + rng.uniform(0, 30, 3)
    return np.clip(back, 0, 255).astype(np.uint8)


def composite(back: np.ndarray, fore: np.ndarray, mask: np.ndarray) -> np.ndarray:
    alpha = (mask.astype(np.float32) / 255.0)[..., None]
    return (fore.astype(np.float32) * alpha + back.astype(np.float32) * (1 - alpha)).astype(np.uint8)


def camera_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    noise = rng.normal(0, sigma, image.shape).astype(np.float32)
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


# --- attacks -------------------------------------------------------------------------------------------------------

def paper_print(rng: np.random.Generator, still: np.ndarray) -> np.ndarray:
    """The still as a photo print: gamut, grain, white margin."""
    img = still.astype(np.float32) / 255.0
    black, white = rng.uniform(0.06, 0.14), rng.uniform(0.82, 0.93)
    img = black + (white - black) * np.power(img, rng.uniform(0.9, 1.2))
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (img - grey) * rng.uniform(0.7, 0.9)  # ink gamut is narrower than the screen's
    img = img * np.array([rng.uniform(0.9, 0.96), rng.uniform(0.96, 1.0), 1.0])  # warm paper (BGR)
    h, w = img.shape[:2]
    grain = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8) * rng.uniform(0.01, 0.025)
    blotch = cv2.resize(rng.normal(0, 1, (8, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC) * 0.02
    img = img + (grain + blotch)[..., None]
    margin = int(0.04 * max(h, w))
    sheet = np.full((h + 2 * margin, w + 2 * margin, 3), white * 0.98, np.float32)
    sheet[margin:margin + h, margin:margin + w] = img
    return np.clip(sheet * 255, 0, 255).astype(np.uint8)


def synth_print(frames: list[np.ndarray], seed: int, motion: float = 1.0) -> list[np.ndarray]:
    """``motion`` scales the hand-held pose tracks (tools/eval/stress.py: a sheet on a stand)."""
    rng = np.random.default_rng(seed)
    still = frames[int(rng.integers(0, min(len(frames), 10)))]
    h, w = still.shape[:2]
    bend = float(rng.choice([0.0, rng.uniform(-0.25, 0.25)]))
    sheet = shade_bend(paper_print(rng, still), bend)
    back = room_background(rng, still)
    poses = motion * hand_motion(rng, len(frames), yaw_deg=rng.uniform(8, 18), pitch_deg=rng.uniform(5, 12),
                                 shift=0.03)
    cover = rng.uniform(0.95, 1.15)
    light = rng.uniform(0.85, 1.05)
    out = []
    for pose in poses:
        warped, mask = warp_sheet(sheet, pose, w, h, cover, cv2.INTER_LINEAR, bend)
        # Lambertian-ish shading of the sheet as it turns to/away from the light.
        shade = light * (0.92 + 0.08 * math.cos(pose[0] - 0.2))
        warped = np.clip(warped.astype(np.float32) * shade, 0, 255).astype(np.uint8)
        image = composite(back, warped, mask)
        out.append(camera_noise(rng, image, 2.0))
    return out


def display_render(image: np.ndarray, screen_px: int, gamma: float, black: float, tint: np.ndarray,
                   depth: float) -> np.ndarray:
    """The frame as a display shows it: resampled to its pixel grid, each pixel 3x3 sub-pixels (R, G, B stripes and
    a darker row), the stripe contrast ``depth`` (0 = no grid, 1 = black gaps)."""
    h, w = image.shape[:2]
    scale = screen_px / max(h, w)
    sw, sh = max(16, round(w * scale)), max(16, round(h * scale))
    screen = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    screen = black + (1 - black) * np.power(screen, gamma)
    screen = screen * tint
    up = cv2.resize(screen, (sw * 3, sh * 3), interpolation=cv2.INTER_NEAREST)
    tile = np.zeros((3, 3, 3), np.float32)
    for col, channel in ((0, 2), (1, 1), (2, 0)):  # BGR image: red stripe first
        tile[0:2, col, channel] = 1.0
    tile /= tile.mean(axis=(0, 1), keepdims=True)
    grid = np.tile(tile, (sh, sw, 1))
    sub = up * (1 - depth + depth * grid)
    return np.clip(sub * 255, 0, 255).astype(np.uint8)


def with_bezel(panel: np.ndarray, fraction: float) -> np.ndarray:
    h, w = panel.shape[:2]
    b = int(fraction * max(h, w))
    out = np.full((h + 2 * b, w + 2 * b, 3), 18, np.uint8)
    out[b:b + h, b:b + w] = panel
    return out


def synth_replay(frames: list[np.ndarray], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = frames[0].shape[:2]
    back = room_background(rng, frames[0])
    poses = hand_motion(rng, len(frames), yaw_deg=rng.uniform(4, 10), pitch_deg=rng.uniform(3, 8), shift=0.02)
    screen_px = int(rng.choice([480, 640, 800]))
    gamma, black = rng.uniform(0.8, 1.25), rng.uniform(0.03, 0.09)
    tint = np.array([rng.uniform(1.0, 1.08), 1.0, rng.uniform(0.88, 0.97)], np.float32)  # bluish white point (BGR)
    cover = rng.uniform(0.9, 1.1)
    bezel = rng.uniform(0.03, 0.06)
    glare_xy = rng.uniform(0.2, 0.8, 2)
    glare_r = rng.uniform(0.08, 0.2) * max(h, w)
    glare_gain = rng.uniform(40, 90)
    depth = rng.uniform(0.3, 0.6)
    lens = rng.uniform(0.3, 0.45)
    out = []
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for i, (frame, pose) in enumerate(zip(frames, poses)):
        panel = with_bezel(display_render(frame, screen_px, gamma, black, tint, depth), bezel)
        # The camera lens blurs the panel a little before the sensor samples it: the grid aliases into a faint moire.
        sigma = lens * panel.shape[1] / (cover * w)
        panel = cv2.GaussianBlur(panel, (0, 0), sigma)
        warped, mask = warp_sheet(panel, pose, w, h, cover * (1 + 2 * bezel), cv2.INTER_LINEAR)
        gx = (glare_xy[0] + 0.6 * pose[0]) * w
        gy = (glare_xy[1] + 0.6 * pose[1]) * h
        glare = glare_gain * np.exp(-((xs - gx) ** 2 + (ys - gy) ** 2) / (2 * glare_r ** 2))
        warped = np.clip(warped.astype(np.float32) + glare[..., None] * (mask[..., None] / 255.0), 0, 255)
        image = composite(back, warped.astype(np.uint8), mask)
        out.append(camera_noise(rng, image, 1.5))
    return out


ATTACKS = {"synthetic-print": ("print", synth_print), "synthetic-replay": ("replay", synth_replay)}


# Renderings of each attack per live clip. One rendering (which still, which hand motion, which screen) is one draw of
# the attack; re-encoding a single rendering alone moved the synthetic figures by two clips, so the fit and the figures
# use three draws per live clip. All of them share the live clip's source (the same cross-validation fold).
VARIANTS = 3


def cached_clip(path: Path, wanted: dict, write) -> bool:
    """Reuse the clip at ``path`` if the .json beside it records exactly ``wanted`` (how it was made: version, seed,
    source...); otherwise ``write(path)`` and record ``wanted``. Returns whether the clip was written."""
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()) == wanted:
        return False
    write(path)
    meta.write_text(json.dumps(wanted))
    return True


def seed_for(name: str, attack: str, variant: int = 0) -> int:
    tag = f"{name}|{attack}|v{SEED_VERSION}" + (f"|{variant}" if variant else "")
    return int.from_bytes(hashlib.sha256(tag.encode()).digest()[:4], "little")


def generate(shared: Path, out: Path, count: int, only: str | None = None, verbose: bool = True,
             variants: int = VARIANTS, attacks: dict | None = None) -> list[dict]:
    """Write (or reuse) the synthetic clips (``attacks``: label -> (folder, make); default ATTACKS); returns rows
    like labels.csv plus ``path`` and ``pair``."""
    rows = []
    with open(shared / "data" / "labels.csv") as fh:
        live = [r for r in csv.DictReader(fh) if r["label"] == "live" and r["kind"] == "video"]
    for row in live:
        if only and only not in row["file"]:
            continue
        stem = Path(row["file"]).stem
        source = functools.cache(functools.partial(read_frames, shared / "data" / row["file"], count))
        for label, (folder, make) in (attacks or ATTACKS).items():
            for variant in range(variants):
                seed = seed_for(row["file"], label, variant)
                path = out / folder / (f"{stem}.mp4" if variant == 0 else f"{stem}~{variant}.mp4")
                # A cached clip is reused only if it was drawn by this version, seed, source and attack.
                wanted = {"version": VERSION, "seed": seed, "from": row["file"], "label": label}
                written = cached_clip(path, wanted, lambda p: write_clip(p, make(source()[0], seed), source()[1]))
                if written and verbose:
                    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                    print(f"synth: {shown} <- {row['file']}", file=sys.stderr)
                rows.append({"file": str(path), "path": path, "label": label, "kind": "video",
                             "source": f"synthetic from {row['file']} (seed {seed})", "pair": row["file"]})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--out", type=Path, default=ROOT / ".cache" / "synth")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--only", help="only live clips whose file name contains this")
    parser.add_argument("--variants", type=int, default=VARIANTS, help="renderings of each attack per live clip")
    args = parser.parse_args(argv)
    if not (args.shared / "data" / "labels.csv").exists():
        print(f"synth: {args.shared}/data/labels.csv is absent; nothing to generate", file=sys.stderr)
        return 0
    rows = generate(args.shared, args.out, args.frames, args.only, variants=args.variants)
    print(f"synth: {len(rows)} clips in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
