"""A procedurally rendered classification task (``synthetic``): seven shape classes and three position classes.

Each image is a *scene* described by a few numbers drawn from ``(seed, split, index)``: a
background (colour gradient plus a faint grating) and one or two textured shapes. The scene is
rendered analytically at any resolution: shape edges are anti-aliased from their signed distance
(coverage = clamp(0.5 - d / pixel, 0, 1)) and gratings are box-filtered (sinc attenuation), so
512 px shows finer stripes and crisper edges than 224 px instead of an upsampled copy.

Ten classes:

- classes 0-2 (*where*): a red disk in one of three 120-degree sectors around the image centre
  (kept 15 degrees inside it), with a small ring on the same ray nearer the centre and at least one
  224-px patch away. All three show the same two objects, so only position tells them apart:
  *where in the image* the disk is (absolute encodings) or *which way it lies from the ring*
  (relative encodings). A model without position information is at chance among them. The
  direction from the ring to the disk decides the class as well as the sector does, and it is what
  a random crop that keeps both shapes cannot change (training's crops, :func:`random_crops`).
- classes 3-9 (*what*): one shape anywhere in the image (square, triangle, plus, diamond,
  horizontal bar, vertical bar, diagonal cross), each with its own hue (40 to 320 degrees, +-8, no
  red). Colour alone tells them apart, inside any one patch, so every model learns them quickly
  (in an exploratory run of a variant without the hues, not kept, they were learned far slower).

A position-blind model can therefore reach at most 70% + 30% / 3 = 80%. The mix is deliberate:
on earlier versions where arrangement decided most classes, learned APE and the relative-only
encodings stayed at the position-blind level for the whole training budget this project can afford
(README, learning speed).
"""

from __future__ import annotations

import colorsys
import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch

from pebench.data.items import Items
from pebench.errors import PebenchError
from pebench.resolution import as_hw

NUM_CLASSES = 10
RENDER_VERSION = 6  # bump when the renderer's output changes, so stale caches are not reused
#: pixels rendered at once: the renderer's float intermediates stay near 1 GB at any resolution
RENDER_PIXELS = 1 << 23
POSITION_CLASSES = 3
SECTOR_DEGREES = 360 / POSITION_CLASSES
SPLITS = {"train": 0, "val": 1}
MAX_OBJECTS = 2
DISK, RING, SQUARE, TRIANGLE, PLUS, DIAMOND, HBAR, VBAR, CROSS = range(9)
CONTENT_SHAPES = (SQUARE, TRIANGLE, PLUS, DIAMOND, HBAR, VBAR, CROSS)
CLASS_NAMES = [
    *(
        f"red disk {k * SECTOR_DEGREES:.0f}-{(k + 1) * SECTOR_DEGREES:.0f} deg clockwise from right of centre"
        for k in range(POSITION_CLASSES)
    ),
    "square",
    "triangle",
    "plus",
    "diamond",
    "horizontal bar",
    "vertical bar",
    "diagonal cross",
]
#: the two groups of classes, whose accuracies tell apart "learned position" from "learned shapes"
CLASS_GROUPS = {"where": list(range(POSITION_CLASSES)), "what": list(range(POSITION_CLASSES, NUM_CLASSES))}
_SECTOR_MARGIN = math.radians(15)
_DISK_TINT = (0.3, -0.15, -0.3)
_FIRST_HUE, _HUE_STEP = 40, 280 / 6  # degrees: seven hues, none of them the disk's red
_MIN_GAP = 0.075  # > 16/224: no patch of the 224-px grid holds both shapes
_EXTENT = 1.2  # every shape lies within this many radii of its centre (the square's corner: 1.13)


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
    lum = rng.uniform(*((0.7, 0.95) if dark_background else (0.05, 0.3)), size=(MAX_OBJECTS, 1))
    color = np.clip(lum + rng.uniform(-0.08, 0.08, size=(MAX_OBJECTS, 3)), 0, 1)
    grating = np.stack(
        [
            rng.uniform(6, 60, MAX_OBJECTS),
            rng.uniform(0, math.pi, MAX_OBJECTS),
            rng.uniform(0, 2 * math.pi, MAX_OBJECTS),
        ],
        axis=1,
    )
    if label < POSITION_CLASSES:
        sector = math.radians(SECTOR_DEGREES)
        angle = label * sector + rng.uniform(_SECTOR_MARGIN, sector - _SECTOR_MARGIN)
        shape = np.array([DISK, RING])
        radius = np.array([rng.uniform(0.07, 0.09), rng.uniform(0.045, 0.055)])
        disk_distance = rng.uniform(0.28, 0.38)
        # the ring sits on the same ray, nearer the centre, with at least one 224-px patch of gap
        ring_distance = disk_distance - radius.sum() - rng.uniform(_MIN_GAP, _MIN_GAP + 0.015)
        direction = np.array([math.cos(angle), math.sin(angle)])
        center = 0.5 + np.outer([disk_distance, ring_distance], direction)
        color[DISK] = np.clip(color[DISK] + np.array(_DISK_TINT), 0, 1)
    else:
        kind = label - POSITION_CLASSES
        hue = (_FIRST_HUE + kind * _HUE_STEP + rng.uniform(-8, 8)) / 360
        value = rng.uniform(0.75, 0.95) if dark_background else rng.uniform(0.35, 0.55)
        color[0] = colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 0.9), value)
        shape = np.array([CONTENT_SHAPES[kind], -1])
        radius = np.array([rng.uniform(0.07, 0.09), 0.0])
        center = np.stack([rng.uniform(0.15, 0.85, size=2), np.zeros(2)])
    return label, bg, rng.uniform(0, 2 * math.pi), bg_grating, shape, center, radius, color, grating


def sample_scenes(seed: int, split: str, indices: np.ndarray | list[int]) -> Scenes:
    """Scene parameters of the given indices; each depends only on (seed, split, index)."""
    rows = [_scene(np.random.default_rng([seed, SPLITS[split], int(i)]), int(i) % NUM_CLASSES) for i in indices]
    return Scenes(*(np.stack([np.asarray(r[f]) for r in rows]) for f in range(9)))


def random_crops(scenes: Scenes, rng: np.random.Generator, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
    """Random-resized-crop windows (B, 4) = (x0, y0, width, height) in scene units, one per scene.

    Area and aspect are drawn as torchvision's RandomResizedCrop draws them (area uniform in
    ``scale``, log-aspect uniform in ``ratio``), then each window grows, keeping its aspect within
    ``ratio`` where the unit square allows, until it holds every shape of its scene with a margin:
    a crop never cuts away what decides the label. The position classes are defined by the
    direction from the ring to the disk, which no crop changes; the aspect range bends that
    direction by at most 8.2 degrees, inside the 15-degree margin kept from the sector edges.
    """
    n = len(scenes.label)
    present = scenes.shape >= 0
    reach = np.where(present, scenes.radius * _EXTENT + 0.02, 0)[..., None]
    lo = np.where(present[..., None], scenes.center - reach, np.inf).min(1)
    hi = np.where(present[..., None], scenes.center + reach, -np.inf).max(1)
    lo, hi = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
    area = rng.uniform(*scale, n)
    aspect = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), n))
    size = np.stack([np.sqrt(area * aspect), np.sqrt(area / aspect)], axis=1)
    size = np.maximum(size, hi - lo)
    # growing one side may have left the aspect range: grow the other side back into it
    size[:, 1] = np.maximum(size[:, 1], size[:, 0] / ratio[1])
    size[:, 0] = np.maximum(size[:, 0], size[:, 1] * ratio[0])
    size = np.minimum(size, 1.0)
    first = np.maximum(0, hi - size)
    room = np.maximum(np.minimum(lo, 1 - size) - first, 0)  # >= 0 up to rounding: the window holds [lo, hi]
    origin = first + rng.random((n, 2)) * room
    return np.concatenate([origin, size], axis=1)


def _box(px: torch.Tensor, py: torch.Tensor, half_x: torch.Tensor, half_y: torch.Tensor) -> torch.Tensor:
    # exact along the edges, which is all anti-aliasing reads; corners come out slightly rounded
    return torch.maximum(px.abs() - half_x, py.abs() - half_y)


def _plus(px: torch.Tensor, py: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.minimum(_box(px, py, r, 0.3 * r), _box(px, py, 0.3 * r, r))


def _triangle(px: torch.Tensor, py: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Equilateral, pointing up (image y points down), circumradius 1.1 r."""
    s = math.sqrt(3) / 2
    edges = (py, s * px - 0.5 * py, -s * px - 0.5 * py)
    return torch.stack(edges).amax(0) - 0.55 * r


#: signed distance (negative inside) from offsets (px, py) to a shape of size r centred at 0
SIGNED_DISTANCE = {
    DISK: lambda px, py, r: torch.sqrt(px**2 + py**2) - r,
    RING: lambda px, py, r: (torch.sqrt(px**2 + py**2) - 0.75 * r).abs() - 0.25 * r,
    SQUARE: lambda px, py, r: _box(px, py, 0.8 * r, 0.8 * r),
    TRIANGLE: _triangle,
    PLUS: _plus,
    DIAMOND: lambda px, py, r: (px.abs() + py.abs() - 1.1 * r) / math.sqrt(2),
    HBAR: lambda px, py, r: _box(px, py, 1.1 * r, 0.35 * r),
    VBAR: lambda px, py, r: _box(px, py, 0.35 * r, 1.1 * r),
    CROSS: lambda px, py, r: _plus((px + py) / math.sqrt(2), (py - px) / math.sqrt(2), r),
}


def _grating(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor, pixel: float) -> torch.Tensor:
    """A sinusoidal grating box-filtered over one pixel: sinc attenuation removes what the grid cannot show."""
    freq, angle, phase = params[..., 0:1, None], params[..., 1:2, None], params[..., 2:3, None]
    wave = torch.sin(2 * math.pi * freq * (x * torch.cos(angle) + y * torch.sin(angle)) + phase)
    return wave * torch.sinc(freq * pixel)


def render(scenes: Scenes, res, crops: np.ndarray | None = None) -> torch.Tensor:
    """Render scenes to float images (B, 3, H, W) in [0, 1]; ``res`` is a size (square) or (H, W).

    Without ``crops`` the unit-square scene fills the whole image: a non-square one stretches it
    along one axis, as timm's eval transform squashes a non-square size (no crop that could cut a
    shape away). ``crops`` (B, 4) from :func:`random_crops` render a window of each scene instead,
    analytically: a small window shows its shapes larger and sharper, not upsampled."""
    f = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in vars(scenes).items()}
    height, width = (res, res) if isinstance(res, int) else res
    n = len(scenes.label)
    window = torch.as_tensor(np.tile([0.0, 0.0, 1.0, 1.0], (n, 1)) if crops is None else crops, dtype=torch.float32)
    x0, y0, w, h = (window[:, i, None, None] for i in range(4))
    # anti-aliasing width: one pixel in scene units, averaged over the two axes
    pixel = torch.sqrt(w * h / (height * width))[:, None]  # (B, 1, 1, 1), as x and y below: (B, 1, H, W)
    y = (y0 + h * ((torch.arange(height, dtype=torch.float32) + 0.5) / height)[None, :, None])[:, None]
    x = (x0 + w * ((torch.arange(width, dtype=torch.float32) + 0.5) / width)[None, None, :])[:, None]
    y, x = y.expand(n, 1, height, width), x.expand(n, 1, height, width)

    angle = f["bg_angle"][:, None, None, None]
    t = (x - 0.5) * torch.cos(angle) + (y - 0.5) * torch.sin(angle)
    t = t / math.sqrt(2) + 0.5  # in [0, 1] over the unit square
    image = f["bg"][:, 0, :, None, None] * (1 - t) + f["bg"][:, 1, :, None, None] * t
    image = image * (1 + 0.06 * _grating(x, y, f["bg_grating"][:, None, :], pixel))

    for k in range(MAX_OBJECTS):
        for shape_id, distance_to in SIGNED_DISTANCE.items():
            rows = torch.nonzero(f["shape"][:, k] == shape_id).flatten()
            if rows.numel() == 0:
                continue
            cx, cy = f["center"][rows, k, 0, None, None, None], f["center"][rows, k, 1, None, None, None]
            xs, ys, pixels = x[rows], y[rows], pixel[rows]  # gathered once: x and y are expanded views
            distance = distance_to(xs - cx, ys - cy, f["radius"][rows, k, None, None, None])
            coverage = (0.5 - distance / pixels).clamp(0, 1)
            texture = 1 + 0.22 * _grating(xs, ys, f["grating"][rows, k : k + 1, :], pixels)
            fill = f["color"][rows, k, :, None, None] * texture
            image[rows] = image[rows] * (1 - coverage) + fill * coverage
    return image.clamp(0, 1)


def disk_border_gap(seed: int, split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the *where* scenes among the first ``n`` of a split, the gap between each one's red disk
    and the nearest image border, as a share of the image side): how near the border the position signal
    sits, which a zero-padded convolution can read (tools/where_by_geometry.py)."""
    scenes = sample_scenes(seed, split, range(n))
    where = np.flatnonzero(scenes.label < POSITION_CLASSES)
    center, radius = scenes.center[where, DISK], scenes.radius[where, DISK]
    return where, np.minimum(center, 1 - center).min(axis=1) - radius


@dataclass(frozen=True)
class SyntheticData:
    seed: int = 0
    train: int = 10000
    val: int = 1000

    @property
    def spec(self) -> str:
        return f"synthetic:seed={self.seed},train={self.train},val={self.val}"

    num_classes = NUM_CLASSES

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_NAMES)

    @property
    def class_groups(self) -> dict[str, list[int]]:
        """The "where" classes are told apart only by position, the "what" ones by shape and colour."""
        return {name: list(classes) for name, classes in CLASS_GROUPS.items()}

    #: rendering is deterministic and costly at high resolution: cached by default (data.cache)
    cached_by_default = True

    def size(self, split: str) -> int:
        return {"train": self.train, "val": self.val}[split]

    def label(self, split: str, position: int) -> int:
        return position % NUM_CLASSES

    def fingerprint(self, split: str, res) -> str:
        key = f"{self.spec}|{split}|{res}|render-v{RENDER_VERSION}"
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def read(self, split: str, res, positions: list[int]) -> Items:
        """Render exactly these items, a few at a time so that memory stays bounded at 1024 px and beyond."""
        height, width = as_hw(res)
        out = torch.empty((len(positions), 3, height, width), dtype=torch.uint8)
        chunk = max(1, RENDER_PIXELS // (height * width))
        for start in range(0, len(positions), chunk):
            part = positions[start : start + chunk]
            images = render(sample_scenes(self.seed, split, part), (height, width))
            out[start : start + len(part)] = images.mul_(255).add_(0.5).to(torch.uint8)
        labels = torch.tensor([self.label(split, p) for p in positions], dtype=torch.int64)
        return Items(out, labels, torch.ones(len(positions), dtype=torch.bool), [])

    def read_crops(self, split: str, res: int, positions: list[int], rng, scale: tuple[float, float],
                   ratio: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Random-resized crops of these items' scenes, rendered analytically (training augmentation):
        uint8 images, quantised as evaluation's are, and labels."""
        scenes = sample_scenes(self.seed, split, positions)
        images = render(scenes, res, random_crops(scenes, rng, scale, ratio))
        return images.mul_(255).add_(0.5).to(torch.uint8), torch.as_tensor(scenes.label, dtype=torch.int64)

    @classmethod
    def from_options(cls, options: str, crop_pct: object = None) -> SyntheticData:
        """``seed=0,train=N,val=N`` (any of them, in any order) -> the dataset (``crop_pct`` is for image
        folders: a rendered scene has nothing to crop)."""
        values = {}
        for item in filter(None, options.split(",")):
            key, eq, value = item.partition("=")
            if not eq or key not in ("seed", "train", "val") or not value.isdigit():
                raise PebenchError(f"bad dataset option '{item}' in 'synthetic:{options}'; options: seed=INT, "
                                   "train=INT, val=INT")
            values[key] = int(value)
        return cls(**values)
