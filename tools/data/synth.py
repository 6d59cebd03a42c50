"""Synthetic tracking sequences in OTB layout: `<out>/synth_000/img/0001.jpg ...` plus
`groundtruth_rect.txt` (one comma-separated `x,y,w,h` line per frame, 2 decimals).

They stand in for real benchmarks in tests, demos and small pretraining runs, so they have to be
hard enough that a tracker learns something, and cheap (numpy + OpenCV, no per-pixel Python).
Each sequence holds:

- a background: multi-octave smooth colour noise with clutter on top (lines, ellipses, rectangles,
  fine-grained texture patches), larger than the frame so the camera can pan across it;
- a target: its own texture (stripes, checks, spots or noise in its own palette, plus a few
  marks) cut out by a random blob-shaped outline, moving smoothly (a damped random walk on the
  velocity, bouncing off the frame border), with random-walk scale, aspect ratio and in-plane
  rotation (within +-35 degrees);
- 1 to 3 distractors: perturbed copies of the target's style (palette jittered, pattern frequency
  and angle changed, a new outline), moving on their own, drawn behind the target;
- occlusion events: a textured patch slides across part of the target for 4 to 14 frames;
- illumination: global gain, a moving brightness gradient and a colour cast, all varying smoothly;
- occasional motion blur along a random direction and short camera-shake bursts;
- sensor noise, then JPEG compression.

Ground truth is the axis-aligned bounding box of the rotated target outline (computed from the
outline polygon, not from pixels), in frame coordinates, always inside the image.

Determinism: sequence k draws everything from `numpy.random.default_rng([seed, k])`, so it is the
same whatever `sequences` is, and the same seed gives byte-identical files (fixed JPEG quality,
OpenCV ops that do not depend on thread count, fixed text formatting).
"""
from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import cv2
import numpy as np

JPEG_QUALITY = 90
TEX = 64          # side of an object's texture, in texture pixels
MAX_ANGLE = 35.0  # degrees; beyond this the axis-aligned ground truth box gets very loose


# ----------------------------------------------------------------------------------------------
# Textures

def _smooth_noise(rng, h, w, channels, octaves=(32, 12, 4)):
    """Sum of upsampled random grids: blotchy structure at a few scales, values about 0..1."""
    out = np.zeros((h, w, channels), np.float32)
    amp, total = 1.0, 0.0
    for cell in octaves:
        grid = rng.random((h // cell + 2, w // cell + 2, channels), dtype=np.float32)
        up = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        out += amp * up.reshape(h, w, channels)
        total += amp
        amp *= 0.55
    return np.clip(out / total, 0, 1)


def _palette(rng, n=3):
    return rng.integers(20, 236, size=(n, 3)).astype(np.float32)


def _colour_map(field, palette):
    """Map a 0..1 field through a palette (piecewise linear between its colours)."""
    n = len(palette)
    pos = np.clip(field, 0, 1) * (n - 1)
    lo = np.minimum(pos.astype(np.int32), n - 2)
    frac = (pos - lo)[..., None]
    return palette[lo] * (1 - frac) + palette[lo + 1] * frac


def _background(rng, w, h):
    field = _smooth_noise(rng, h, w, 1, octaves=(48, 16, 6))[..., 0]
    img = _colour_map(field, _palette(rng, 4))
    img += (_smooth_noise(rng, h, w, 3, octaves=(24, 6)) - 0.5) * 50
    img = np.clip(img, 0, 255).astype(np.uint8)
    area = w * h
    for _ in range(max(4, area // 2500)):  # clutter density scales with the canvas
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(4)
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        s = int(rng.integers(4, max(6, min(w, h) // 6)))
        if kind == 0:
            x2, y2 = x + int(rng.integers(-4 * s, 4 * s)), y + int(rng.integers(-4 * s, 4 * s))
            cv2.line(img, (x, y), (x2, y2), colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        elif kind == 1:
            cv2.ellipse(img, (x, y), (s, int(rng.integers(2, s + 3))), float(rng.uniform(0, 180)),
                        0, 360, colour, -1 if rng.random() < 0.6 else 2, cv2.LINE_AA)
        elif kind == 2:
            cv2.rectangle(img, (x, y), (x + s, y + int(rng.integers(2, s + 3))), colour, -1)
        else:  # a patch of fine texture: high-frequency clutter a tracker must not latch onto
            ph, pw = min(2 * s, h - y), min(2 * s, w - x)
            if ph > 2 and pw > 2:
                patch = _colour_map(_smooth_noise(rng, ph, pw, 1, octaves=(3,))[..., 0], _palette(rng, 2))
                img[y:y + ph, x:x + pw] = patch.astype(np.uint8)
    return img


def _new_style(rng):
    """What makes an object look like itself: palette, pattern, outline."""
    return {
        "palette": _palette(rng, 3),
        "pattern": int(rng.integers(4)),          # 0 stripes, 1 checks, 2 spots, 3 noise
        "freq": float(rng.uniform(2.0, 6.0)),     # pattern periods across the texture
        "angle": float(rng.uniform(0, math.pi)),
        "harmonics": rng.normal(0, 0.12, size=(3, 2)),  # outline wobble (blob shape)
        "squareness": float(rng.uniform(0, 1)),   # 0 ellipse-like .. 1 box-like outline
    }


def _perturb_style(style, rng):
    """A look-alike: same kind of object, not the same object."""
    return {
        "palette": np.clip(style["palette"] + rng.normal(0, 22, size=style["palette"].shape), 0, 255)
        .astype(np.float32),
        "pattern": style["pattern"] if rng.random() < 0.75 else int(rng.integers(4)),
        "freq": style["freq"] * float(rng.uniform(0.75, 1.3)),
        "angle": style["angle"] + float(rng.normal(0, 0.4)),
        "harmonics": style["harmonics"] + rng.normal(0, 0.05, size=(3, 2)),
        "squareness": float(np.clip(style["squareness"] + rng.normal(0, 0.2), 0, 1)),
    }


def _render_object(style, rng):
    """Texture (TEXxTEXx3 float32) and outline polygon (Nx2, texture coordinates)."""
    t = (np.arange(TEX, dtype=np.float32) + 0.5) / TEX
    xx, yy = np.meshgrid(t, t)
    u = xx * math.cos(style["angle"]) + yy * math.sin(style["angle"])
    v = -xx * math.sin(style["angle"]) + yy * math.cos(style["angle"])
    f = style["freq"]
    kind = style["pattern"]
    if kind == 0:
        field = 0.5 + 0.5 * np.sin(2 * math.pi * f * u)
    elif kind == 1:
        field = ((np.floor(f * u) + np.floor(f * v)) % 2) * 0.8 + 0.1
    elif kind == 2:
        field = 0.5 + 0.5 * np.sin(2 * math.pi * f * u) * np.sin(2 * math.pi * f * v)
    else:
        field = _smooth_noise(rng, TEX, TEX, 1, octaves=(max(2, int(TEX / (2 * f))), 3))[..., 0]
    tex = _colour_map(field.astype(np.float32), style["palette"])
    tex += (_smooth_noise(rng, TEX, TEX, 3, octaves=(16, 4)) - 0.5) * 40
    for _ in range(int(rng.integers(1, 4))):  # a few marks so no two objects share a texture exactly
        c = tuple(float(x) for x in style["palette"][int(rng.integers(3))][::-1])
        cv2.circle(tex, (int(rng.integers(8, TEX - 8)), int(rng.integers(8, TEX - 8))),
                   int(rng.integers(3, 10)), c, -1, cv2.LINE_AA)
    # Outline: superellipse with a few harmonics, filling most of the texture square.
    phi = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    r = np.ones_like(phi)
    for k, (a, b) in enumerate(style["harmonics"], start=2):
        r += a * np.cos(k * phi) + b * np.sin(k * phi)
    p = 2 + 6 * style["squareness"]
    c, s = np.cos(phi), np.sin(phi)
    shape = (np.abs(c) ** p + np.abs(s) ** p) ** (-1 / p)
    r = np.clip(r * shape, 0.5, 1.45)
    r = r / r.max() * (TEX / 2 - 1)
    poly = np.stack([TEX / 2 + r * c, TEX / 2 + r * s], axis=1)
    return np.clip(tex, 0, 255).astype(np.float32), poly.astype(np.float32)


def _mask(poly):
    m = np.zeros((TEX, TEX), np.uint8)
    cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return m.astype(np.float32) / 255.0


# ----------------------------------------------------------------------------------------------
# Motion

class _Mover:
    """Position, velocity, size, aspect and angle, each a smooth random walk."""

    def __init__(self, rng, w, h, base, speed):
        self.w, self.h = w, h
        self.base = base
        self.speed = speed
        self.pos = np.array([rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h])
        self.vel = rng.normal(0, speed, 2)
        self.log_s, self.log_a = 0.0, float(rng.normal(0, 0.25))
        self.angle, self.omega = float(rng.uniform(-15, 15)), 0.0

    def step(self, rng):
        self.vel = 0.9 * self.vel + rng.normal(0, self.speed * 0.45, 2)
        vmax = 3 * self.speed
        norm = float(np.hypot(*self.vel))
        if norm > vmax:
            self.vel *= vmax / norm
        self.pos += self.vel
        # Mean-reverting walks keep scale, aspect and angle in range without hard walls.
        ds, da, dw = rng.normal(0, 1, 3)
        self.log_s = 0.95 * self.log_s + 0.04 * float(ds)
        self.log_a = 0.97 * self.log_a + 0.025 * float(da)
        self.omega = 0.85 * self.omega + 0.8 * float(dw)
        self.angle = min(max(self.angle + self.omega, -MAX_ANGLE), MAX_ANGLE)

    def size(self):
        s = self.base * math.exp(min(max(self.log_s, -0.4), 0.4))
        a = math.exp(min(max(self.log_a, -0.45), 0.45))
        return s * math.sqrt(a), s / math.sqrt(a)

    def matrix(self, offset=(0.0, 0.0)):
        """Affine map texture -> frame: scale to size, rotate, move the centre to pos+offset."""
        sw, sh = self.size()
        th = math.radians(self.angle)
        c, s = math.cos(th), math.sin(th)
        a = np.array([[c * sw / TEX, -s * sh / TEX], [s * sw / TEX, c * sh / TEX]])
        centre = self.pos + np.asarray(offset)
        t = centre - a @ np.array([TEX / 2, TEX / 2])
        return np.hstack([a, t[:, None]])

    def keep_inside(self, poly, offset, margin=1.0):
        """Shift the object so its outline is inside the frame; bounce the velocity."""
        pts = _transform(poly, self.matrix(offset))
        lo, hi = pts.min(0), pts.max(0)
        limit = np.array([self.w, self.h], np.float64) - margin
        for k in range(2):
            if lo[k] < margin:
                self.pos[k] += margin - lo[k]
                self.vel[k] = abs(self.vel[k])
            elif hi[k] > limit[k]:
                self.pos[k] -= hi[k] - limit[k]
                self.vel[k] = -abs(self.vel[k])


def _transform(poly, m):
    return poly.astype(np.float64) @ m[:, :2].T + m[:, 2]


def _paste(frame, tex, alpha, m):
    """Warp texture and alpha into the frame, only over the object's bounding region."""
    h, w = frame.shape[:2]
    corners = _transform(np.array([[0, 0], [TEX, 0], [0, TEX], [TEX, TEX]], np.float32), m)
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    local = m.copy()
    local[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    wt = cv2.warpAffine(tex, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    wa = cv2.warpAffine(alpha, local, size, flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
    roi = frame[y0:y1, x0:x1]
    roi *= 1 - wa
    roi += wt * wa


def _motion_blur(img, length, angle):
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    dx, dy = math.cos(angle) * c, math.sin(angle) * c
    cv2.line(k, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1)
    return cv2.filter2D(img, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT)


# ----------------------------------------------------------------------------------------------
# One sequence

def _events(rng, frames, rate, min_len, max_len):
    """Boolean timeline with a few random intervals switched on."""
    on = np.zeros(frames, bool)
    starts = []
    t = int(rng.integers(3, 12))
    while t < frames:
        if rng.random() < rate:
            n = int(rng.integers(min_len, max_len + 1))
            on[t:t + n] = True
            starts.append((t, min(n, frames - t)))
            t += n + int(rng.integers(4, 12))
        else:
            t += int(rng.integers(4, 12))
    return on, starts


def _make_sequence(rng, frames, w, h):
    """Yield (BGR uint8 frame, box) for each frame of one sequence."""
    pad = max(w, h) // 4  # room for panning and shake
    canvas = _background(rng, w + 2 * pad, h + 2 * pad)
    pan_start = rng.uniform(0, 2 * pad, 2)
    pan_end = rng.uniform(0, 2 * pad, 2)

    base = min(w, h) * float(rng.uniform(0.18, 0.3))
    speed = base * float(rng.uniform(0.04, 0.1))
    style = _new_style(rng)
    target = _Mover(rng, w, h, base, speed)
    tex, poly = _render_object(style, rng)
    alpha = _mask(poly)

    distractors = []
    for _ in range(int(rng.integers(1, 4))):
        d_style = _perturb_style(style, rng)
        d_tex, d_poly = _render_object(d_style, rng)
        mover = _Mover(rng, w, h, base * float(rng.uniform(0.8, 1.2)), speed * float(rng.uniform(0.7, 1.4)))
        distractors.append((mover, d_tex, _mask(d_poly), d_poly))

    # Occluders: a patch cut from a fresh texture, sliding across part of the target.
    occluded, occ_events = _events(rng, frames, 0.12, 4, 14)
    occ_params = {}
    for t0, n in occ_events:
        occ_tex = _background(rng, TEX, TEX).astype(np.float32)
        frac = rng.uniform(0.35, 0.65, 2)  # fraction of the target's size it covers
        side = rng.uniform(-1, 1, 2)
        direction = rng.normal(0, 1, 2)
        direction /= np.linalg.norm(direction) + 1e-9
        occ_params[t0] = (n, occ_tex, frac, side, direction)
    shake_on, _ = _events(rng, frames, 0.08, 2, 6)
    blur_on = rng.random(frames) < 0.08

    gain_amp, gain_period, gain_phase = rng.uniform(0.1, 0.35), rng.uniform(20, 60), rng.uniform(0, 6.3)
    grad_amp, grad_angle = rng.uniform(0.1, 0.4), rng.uniform(0, 2 * math.pi)
    cast_amp, cast_phase = rng.uniform(0.03, 0.12, 3), rng.uniform(0, 6.3, 3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx - w / 2) * math.cos(grad_angle) + (yy - h / 2) * math.sin(grad_angle)) / max(w, h)
    # Sensor noise: a small bank of noise fields, rolled by a random offset per frame (drawing a
    # fresh full-frame Gaussian field every frame was the slowest step).
    noise_bank = rng.standard_normal((3, h, w, 3), dtype=np.float32) * float(rng.uniform(1.5, 4.0))

    active_occ = None
    for t in range(frames):
        shake = rng.normal(0, max(1.0, 0.015 * max(w, h)), 2) if shake_on[t] else np.zeros(2)
        cam = pan_start + (pan_end - pan_start) * (t / max(1, frames - 1)) + shake
        cx, cy = np.clip(np.round(cam).astype(int), 0, 2 * pad)
        frame = canvas[cy:cy + h, cx:cx + w].astype(np.float32)

        if t > 0:
            target.step(rng)
            for d in distractors:
                d[0].step(rng)
        # Camera shake moves the whole scene, objects included (by the sub-pixel part too).
        offset = -(cam - pan_start - (pan_end - pan_start) * (t / max(1, frames - 1)))
        for mover, d_tex, d_alpha, d_poly in distractors:
            mover.keep_inside(d_poly, offset, margin=-0.3 * mover.base)  # may leave the frame a bit
            _paste(frame, d_tex, d_alpha, mover.matrix(offset))
        target.keep_inside(poly, offset)
        m = target.matrix(offset)
        _paste(frame, tex, alpha, m)
        pts = _transform(poly, m)
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0)
        box = (float(x0), float(y0), float(x1 - x0), float(y1 - y0))

        if t in occ_params:
            active_occ = (t,) + occ_params[t]
        if active_occ is not None and occluded[t]:
            t0, n, occ_tex, frac, side, direction = active_occ
            progress = (t - t0) / max(1, n - 1) - 0.5  # -0.5 .. 0.5 across the event
            ow, oh = frac[0] * box[2], frac[1] * box[3]
            centre = np.array([x0 + x1, y0 + y1]) / 2 + side * np.array([box[2], box[3]]) * 0.35 \
                + direction * progress * np.array([box[2], box[3]])
            ox0, oy0 = np.clip(np.round(centre - (ow / 2, oh / 2)).astype(int), 0, (w - 1, h - 1))
            ox1, oy1 = np.clip(np.round(centre + (ow / 2, oh / 2)).astype(int), 0, (w, h))
            if ox1 > ox0 and oy1 > oy0:
                frame[oy0:oy1, ox0:ox1] = cv2.resize(occ_tex, (int(ox1 - ox0), int(oy1 - oy0)),
                                                     interpolation=cv2.INTER_LINEAR)
        elif active_occ is not None and not occluded[t]:
            active_occ = None

        gain = 1 + gain_amp * math.sin(2 * math.pi * t / gain_period + gain_phase)
        grad = grad_amp * math.sin(2 * math.pi * t / (2 * gain_period) + gain_phase)
        cast = 1 + cast_amp * np.sin(2 * math.pi * t / gain_period + cast_phase)
        frame *= (gain * (1 + grad * ramp))[..., None]
        frame *= cast.astype(np.float32)
        if blur_on[t]:
            frame = _motion_blur(frame, int(rng.integers(2, 5)) * 2 + 1, float(rng.uniform(0, math.pi)))
        k, dy, dx = rng.integers(0, (3, h, w))
        frame += np.roll(noise_bank[k], (int(dy), int(dx)), axis=(0, 1))
        yield np.clip(frame, 0, 255).astype(np.uint8), box


# ----------------------------------------------------------------------------------------------
# Public entry

def synthesize(out_dir: str | Path, sequences: int = 20, frames: int = 60,
               size: tuple[int, int] = (192, 144), seed: int = 0) -> list[Path]:
    """Write `sequences` OTB-layout sequences of `frames` frames of `size` = (width, height).

    Existing `synth_NNN` folders in `out_dir` are replaced (so a smaller rerun leaves no stale
    sequences behind); nothing else there is touched. Returns the sequence folders.
    """
    w, h = int(size[0]), int(size[1])
    if w < 48 or h < 48:
        raise ValueError(f"size {w}x{h}: width and height must be at least 48 pixels")
    if sequences < 1 or frames < 2:
        raise ValueError(f"need at least 1 sequence and 2 frames (got {sequences} and {frames})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.iterdir():
        if old.is_dir() and re.fullmatch(r"synth_\d{3,}", old.name):
            shutil.rmtree(old)
    digits = max(4, len(str(frames)))
    paths = []
    for k in range(sequences):
        rng = np.random.default_rng([seed, k])
        seq_dir = out / f"synth_{k:03d}"
        (seq_dir / "img").mkdir(parents=True)
        lines = []
        # Frames are generated directly in OpenCV's BGR order: colours are random anyway.
        for t, (img, box) in enumerate(_make_sequence(rng, frames, w, h)):
            cv2.imwrite(str(seq_dir / "img" / f"{t + 1:0{digits}d}.jpg"), img,
                        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            lines.append(",".join(f"{v:.2f}" for v in box))
        (seq_dir / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")
        paths.append(seq_dir)
    return paths
