"""A procedurally rendered classification task in which only position decides the class.

Each image is a *scene* described by a few numbers drawn from ``(seed, split, index)``: a
background (colour gradient plus a faint grating), a textured red disk and a small ring. The scene
is rendered analytically at any resolution: shape edges are anti-aliased from their signed distance
(coverage = clamp(0.5 - d / pixel, 0, 1)) and gratings are box-filtered (sinc attenuation), so
512 px shows finer stripes and crisper edges than 224 px instead of an upsampled copy.

Ten classes: class k puts the disk in the k-th 36-degree sector around the image centre (angles
clockwise from "right", image y pointing down, kept 8 degrees inside the sector), and the ring on
the same ray between the disk and the centre, at least one 224-px patch away from the disk. Every
class shows the same two objects, so a model without position information sees the same bag of
patches for all of them (10%, chance). The class is both *where in the image* the disk is, which
absolute encodings read off directly, and *which way the disk lies from the ring*, a short-range
relation that encodings knowing only relative offsets (RPE, ALiBi, CPB, RoPE) can read.

Distances, radii, textures, exact angles and background colours are random. Earlier versions mixed
arrangement classes with content classes; on them learned APE, sin-cos and PEG models stayed at the
position-blind level for the whole training budget this project can afford (README).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

NUM_CLASSES = 10
SECTOR_DEGREES = 360 / NUM_CLASSES
CLASS_NAMES = [f"disk {k * SECTOR_DEGREES:.0f}-{(k + 1) * SECTOR_DEGREES:.0f} deg clockwise from right of the ring"
               for k in range(NUM_CLASSES)]
SPLITS = {"train": 0, "val": 1}
MAX_OBJECTS = 2
DISK, RING = range(2)
_SECTOR_MARGIN = math.radians(8)
_DISK_TINT = (0.3, -0.15, -0.3)
_MIN_GAP = 0.075  # > 16/224: no patch of the 224-px grid holds both shapes


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
    sector = math.radians(SECTOR_DEGREES)
    angle = label * sector + rng.uniform(_SECTOR_MARGIN, sector - _SECTOR_MARGIN)
    shape = np.array([DISK, RING])
    radius = np.array([rng.uniform(0.07, 0.09), rng.uniform(0.045, 0.055)])
    disk_distance = rng.uniform(0.28, 0.38)
    # the ring sits on the same ray, nearer the centre, with at least one 224-px patch of gap
    ring_distance = disk_distance - radius.sum() - rng.uniform(_MIN_GAP, _MIN_GAP + 0.015)
    direction = np.array([math.cos(angle), math.sin(angle)])
    center = 0.5 + np.outer([disk_distance, ring_distance], direction)
    lum = rng.uniform(*((0.7, 0.95) if dark_background else (0.05, 0.3)), size=(MAX_OBJECTS, 1))
    color = np.clip(lum + rng.uniform(-0.08, 0.08, size=(MAX_OBJECTS, 3)), 0, 1)
    color[DISK] = np.clip(color[DISK] + np.array(_DISK_TINT), 0, 1)
    grating = np.stack([rng.uniform(6, 60, MAX_OBJECTS), rng.uniform(0, math.pi, MAX_OBJECTS),
                        rng.uniform(0, 2 * math.pi, MAX_OBJECTS)], axis=1)
    return label, bg, rng.uniform(0, 2 * math.pi), bg_grating, shape, center, radius, color, grating


def sample_scenes(seed: int, split: str, indices: np.ndarray | list[int]) -> Scenes:
    """Scene parameters of the given indices; each depends only on (seed, split, index)."""
    rows = [
        _scene(np.random.default_rng([seed, SPLITS[split], int(i)]), int(i) % NUM_CLASSES) for i in indices
    ]
    return Scenes(*(np.stack([np.asarray(r[f]) for r in rows]) for f in range(9)))


#: signed distance (negative inside) from offsets (px, py) to a shape of size r centred at 0
SIGNED_DISTANCE = {
    DISK: lambda px, py, r: torch.sqrt(px**2 + py**2) - r,
    RING: lambda px, py, r: (torch.sqrt(px**2 + py**2) - 0.75 * r).abs() - 0.25 * r,
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
