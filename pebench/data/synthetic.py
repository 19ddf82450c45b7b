"""A procedurally rendered classification task in which position matters.

Each image is a *scene* described by a few numbers drawn from ``(seed, split, index)``: a
background (colour gradient plus a faint grating) and one to three textured shapes. The scene is
rendered analytically at any resolution: shape edges are anti-aliased from their signed distance
(coverage = clamp(0.5 - d / pixel, 0, 1)) and gratings are box-filtered (sinc attenuation), so 512 px
shows finer stripes and crisper edges than 224 px instead of an upsampled copy.

Ten classes. Eight are *arrangements* of two given shapes, so a model without position information
sees the same bag of patches for "circle above square" and "circle below square". The pair sits
across the image centre, so the arrangement also fixes where each shape is (the circle of "circle
above square" is always in the top half): both relative and absolute encodings can solve it.

====  =======================================
0-3   circle above / below / left of / right of a square
4-7   triangle above / below / left of / right of a diamond
8     three small squares anywhere
9     one large ring anywhere
====  =======================================

Sizes, stripe frequencies, positions and background colours are random; each role of each pair
has its own hue (circle red, square blue, triangle yellow, diamond green, jittered), so what plays
which role is plain to see and only the arrangement (0-7) or the content (8, 9) identifies the class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

NUM_CLASSES = 10
CLASS_NAMES = [
    *(f"{a} {rel} {b}" for a, b in (("circle", "square"), ("triangle", "diamond"))
      for rel in ("above", "below", "left of", "right of")),
    "three squares",
    "one large ring",
]
SPLITS = {"train": 0, "val": 1}
MAX_OBJECTS = 3
CIRCLE, SQUARE, TRIANGLE, DIAMOND, RING = range(5)
_PAIRS = ((CIRCLE, SQUARE), (TRIANGLE, DIAMOND))
# unit direction from the first shape to the second, per relation "first is above/below/left/right"
# colour offsets of (first, second) shape per pair: red/blue, yellow/green
_PAIR_TINTS = (((0.3, -0.15, -0.3), (-0.3, -0.05, 0.3)), ((0.25, 0.25, -0.35), (-0.3, 0.25, -0.1)))
_DIRECTIONS = ((0.0, 1.0), (0.0, -1.0), (1.0, 0.0), (-1.0, 0.0))  # (dx, dy), y grows downward


@dataclass
class Scenes:
    """Parameters of a batch of scenes, one row per image (numpy, float64)."""

    label: np.ndarray  # (B,)
    bg: np.ndarray  # (B, 2, 3) gradient end colours
    bg_angle: np.ndarray  # (B,)
    bg_grating: np.ndarray  # (B, 3): frequency (cycles/image), angle, phase
    shape: np.ndarray  # (B, K) shape id, -1 = absent
    center: np.ndarray  # (B, K, 2) (x, y) in [0, 1]
    radius: np.ndarray  # (B, K)
    color: np.ndarray  # (B, K, 3)
    grating: np.ndarray  # (B, K, 3): frequency, angle, phase


def _scene(rng: np.random.Generator, label: int) -> tuple:
    dark_background = rng.random() < 0.5
    base = rng.uniform(0.08, 0.35) if dark_background else rng.uniform(0.65, 0.92)
    bg = np.clip(base + rng.uniform(-0.08, 0.08, size=(2, 3)), 0, 1)
    bg_grating = (rng.uniform(3, 12), rng.uniform(0, math.pi), rng.uniform(0, 2 * math.pi))
    shape = np.full(MAX_OBJECTS, -1)
    center = np.zeros((MAX_OBJECTS, 2))
    radius = np.zeros(MAX_OBJECTS)
    if label < 8:
        first, second = _PAIRS[label // 4]
        dx, dy = _DIRECTIONS[label % 4]
        separation = rng.uniform(0.36, 0.5)
        jitter = rng.uniform(-0.08, 0.08)
        along, across = rng.uniform(0.44, 0.56), rng.uniform(0.3, 0.7)
        mid = np.array([along, across] if dx else [across, along])
        offset = np.array([dx, dy]) * separation / 2 + np.array([dy, dx]) * jitter / 2
        shape[:2] = first, second
        center[0], center[1] = mid - offset, mid + offset
        radius[:2] = rng.uniform(0.1, 0.14, size=2)
    elif label == 8:
        shape[:] = SQUARE
        center[:] = rng.uniform(0.15, 0.85, size=(3, 2))
        radius[:] = rng.uniform(0.05, 0.07, size=3)
    else:
        shape[0] = RING
        center[0] = rng.uniform(0.3, 0.7, size=2)
        radius[0] = rng.uniform(0.18, 0.26)
    lum = rng.uniform(*((0.7, 0.95) if dark_background else (0.05, 0.3)), size=(MAX_OBJECTS, 1))
    color = np.clip(lum + rng.uniform(-0.25, 0.25, size=(MAX_OBJECTS, 3)), 0, 1)
    if label < 8:  # each role of each pair has its own hue, so what plays which role is plain to see
        for slot in range(2):
            tint = _PAIR_TINTS[label // 4][slot]
            color[slot] = np.clip(lum[slot] + np.array(tint) + rng.uniform(-0.08, 0.08, 3), 0, 1)
    grating = np.stack([rng.uniform(6, 60, MAX_OBJECTS), rng.uniform(0, math.pi, MAX_OBJECTS),
                        rng.uniform(0, 2 * math.pi, MAX_OBJECTS)], axis=1)
    return label, bg, rng.uniform(0, 2 * math.pi), bg_grating, shape, center, radius, color, grating


def sample_scenes(seed: int, split: str, indices: np.ndarray | list[int]) -> Scenes:
    """Scene parameters of the given indices; each depends only on (seed, split, index)."""
    rows = [
        _scene(np.random.default_rng([seed, SPLITS[split], int(i)]), int(i) % NUM_CLASSES) for i in indices
    ]
    return Scenes(*(np.stack([np.asarray(r[f]) for r in rows]) for f in range(9)))


def _triangle(px: torch.Tensor, py: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Exact distance to an upward equilateral triangle (after Quilez), y pointing down."""
    k = math.sqrt(3.0)
    tx, ty = px.abs() - r, -py + r / k
    fold = tx + k * ty > 0
    tx, ty = torch.where(fold, (tx - k * ty) / 2, tx), torch.where(fold, (-k * tx - ty) / 2, ty)
    tx = tx - torch.minimum(torch.maximum(tx, -2 * r), torch.zeros_like(tx))
    return -torch.sqrt(tx**2 + ty**2) * torch.sign(ty)


#: signed distance (negative inside) from offsets (px, py) to a shape of size r centred at 0
SIGNED_DISTANCE = {
    CIRCLE: lambda px, py, r: torch.sqrt(px**2 + py**2) - r,
    SQUARE: lambda px, py, r: torch.maximum(px.abs(), py.abs()) - 0.85 * r,
    TRIANGLE: _triangle,
    DIAMOND: lambda px, py, r: (px.abs() + py.abs() - 1.2 * r) / math.sqrt(2),
    RING: lambda px, py, r: (torch.sqrt(px**2 + py**2) - 0.75 * r).abs() - 0.22 * r,
}


def _grating(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor, pixel: float) -> torch.Tensor:
    """A sinusoidal grating box-filtered over one pixel: sinc attenuation removes what the grid cannot show."""
    freq, angle, phase = params[..., 0:1, None], params[..., 1:2, None], params[..., 2:3, None]
    wave = torch.sin(2 * math.pi * freq * (x * torch.cos(angle) + y * torch.sin(angle)) + phase)
    return wave * torch.sinc(freq * pixel)


def render(scenes: Scenes, res: int) -> torch.Tensor:
    """Render scenes to float images (B, 3, res, res) in [0, 1]."""
    f = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in vars(scenes).items()}
    pixel = 1.0 / res
    axis = (torch.arange(res, dtype=torch.float32) + 0.5) * pixel
    y, x = axis[:, None].expand(res, res), axis[None, :].expand(res, res)

    t = (x - 0.5) * torch.cos(f["bg_angle"])[:, None, None] + (y - 0.5) * torch.sin(f["bg_angle"])[:, None, None]
    t = (t / math.sqrt(2) + 0.5)[:, None]  # (B, 1, H, W) in [0, 1]
    image = f["bg"][:, 0, :, None, None] * (1 - t) + f["bg"][:, 1, :, None, None] * t
    image = image * (1 + 0.06 * _grating(x, y, f["bg_grating"][:, None, :], pixel))

    for k in range(MAX_OBJECTS):
        for shape_id, distance_to in SIGNED_DISTANCE.items():
            rows = torch.nonzero(f["shape"][:, k] == shape_id).flatten()
            if rows.numel() == 0:
                continue
            cx, cy = f["center"][rows, k, 0, None, None], f["center"][rows, k, 1, None, None]
            distance = distance_to(x - cx, y - cy, f["radius"][rows, k, None, None])
            coverage = (0.5 - distance / pixel).clamp(0, 1)[:, None]
            texture = 1 + 0.22 * _grating(x, y, f["grating"][rows, k : k + 1, :], pixel)
            fill = f["color"][rows, k, :, None, None] * texture
            image[rows] = image[rows] * (1 - coverage) + fill * coverage
    return image.clamp(0, 1)
