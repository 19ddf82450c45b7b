"""LookHere: directed 2D attention masks with distance penalties, from "LookHere: Vision Transformers
with Directed Attention Generalize and Extrapolate" (Anthony Fuller, Daniel G. Kyrollos, Yousef
Yassin, James R. Green; NeurIPS 2024; arXiv:2405.13985). Written from the paper and the authors'
code (GreenCUBIC/lookhere, ``lookhere.py``); nothing is copied from it.

Every head looks in one fixed direction with a fixed field of view (FOV): a query patch attends
only to the patches inside a closed wedge of angle ``fov`` that starts at the query and points in
the head's direction (the query itself is always inside, so no row is ever fully masked). Inside
the wedge the logit gets a linear penalty on the Euclidean patch distance, as in 2D ALiBi:

    bias(h, l, q, k) = -global_slope * layer_slope[l] * head_slope[h] * |k - q|    (k inside the FOV)
    bias(h, l, q, k) = NEG                                                          (k outside)

NEG is ``torch.finfo(dtype).min / 2`` of the attention dtype: finite, so SDPA never sees a row of
-inf, and half the dtype's range so another component's bias can still be added (the authors fill
with the bfloat16 maximum). The class token attends to every patch and every patch attends to it,
with no penalty (zero rows and columns, as in the authors' code). Nothing is learned: the encoding
has no parameters and no state-dict entries.

Fields of view and directions (``fov`` option). The wedges are those of the authors' masks; angles
are counter-clockwise from "right", "up" being towards row 0 of the image:

* fov=180 (LookHere-180): half-planes pointing up, right, down, left (the authors' "halves"), then
  half-planes pointing to the four diagonals (their "diagonals");
* fov=90 (LookHere-90): 90-degree cones centred on up, right, down, left (their "triangles"), then
  the four quadrants (their "corners");
* fov=45 (LookHere-45): the eight 45-degree wedges between the axes and the diagonals, as two
  groups of four, each group rotation-symmetric (centres 112.5, 22.5, 292.5, 202.5 degrees, then
  67.5, 337.5, 247.5, 157.5). The authors' "eighths1"/"eighths2" hold the same eight wedges but
  group them differently.

Heads are assigned in rounds of eight, one per direction of the first group and then of the
second, which matches the authors' code for a two-group configuration with 12 heads (ViT-B: the
first group twice, the second once) and with 16 heads. Every head of round r has head slope
2^-(r+1) (the authors' per-group slopes: 1/2 for the first use of a direction, 1/4 for the
second, ...). A round with fewer than eight heads
(any head count that is not a multiple of 8, e.g. pebench's micro/tiny with 3 heads and small with
6) fills the first group before the second, and takes k of a group's four directions evenly spread
around the circle (directions 0, 1*4//k, 2*4//k, ...): 3 heads get up, right, down (fov 180/90);
6 heads get the whole first group plus two opposite directions of the second. The directions are
the same in every block; the layer slope falls linearly from ``layer_slope_first`` in block 0 to
``layer_slope_last`` in the last block, and ``global_slope`` multiplies everything (the knob the
authors vary at test resolutions).

Defaults: fov=90. The paper reports all three variants; LookHere-45 leaves each head 1/8 of the
directions, which with 3 heads (micro, tiny) keeps every patch blind to 5/8 of the image in every
block, so the middle variant is the default. Slopes: global 1 and layer slopes 1.5 -> 0.5. The
authors ship their values in the configs stored with their released checkpoints, which pebench has
not read; check these defaults against them before comparing with the paper's numbers.

Modes. The masks (which keys a head sees) are always computed on the integer offsets of the
current grid, so directions never change with the mode; only the distance penalty does:

* native: distances between the new integer patch positions (a patch 20 patches away at 512 px is
  penalised for 20 patches, beyond anything seen at 224 px);
* interp: distances with the offsets scaled by G0/G per axis (the new grid squeezed onto the
  trained extent: the penalty of the farthest pair stays near the trained one, directions as
  native);
* scale=S: distances multiplied by S, which is the same as global_slope times S (native is S=1,
  interp on a square grid is S=G0/G).
"""

from __future__ import annotations

import torch

from pebench.encodings.base import (
    Arch,
    Component,
    Context,
    OffsetBias,
    Option,
    grid_offsets,
    pair_bias,
    position_scale_on,
    scaled_offsets,
)

#: integer ray of every multiple of 45 degrees, (x, y) with y pointing up the image
_RAYS = {0: (1, 0), 45: (1, 1), 90: (0, 1), 135: (-1, 1), 180: (-1, 0), 225: (-1, -1), 270: (0, -1), 315: (1, -1)}

#: per field of view, the centres (degrees) of the first and second group of four directions,
#: each listed clockwise so that picking directions 0 and 2 gives opposite ones
DIRECTION_GROUPS: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {
    180: ((90, 0, 270, 180), (45, 315, 225, 135)),
    90: ((90, 0, 270, 180), (45, 315, 225, 135)),
    45: ((112.5, 22.5, 292.5, 202.5), (67.5, 337.5, 247.5, 157.5)),
}


def head_plan(num_heads: int, fov: int) -> list[tuple[float, float]]:
    """(direction in degrees, head slope) of every head, in head order (see the module docstring)."""
    first, second = DIRECTION_GROUPS[fov]
    plan: list[tuple[float, float]] = []
    for round_, start in enumerate(range(0, num_heads, 8)):
        count = min(8, num_heads - start)
        slope = 2.0 ** -(round_ + 1)
        for group, k in ((first, min(count, 4)), (second, count - min(count, 4))):
            plan += [(group[i * 4 // k], slope) for i in range(k)]
    return plan


def visible(vectors: torch.Tensor, direction: float, fov: int) -> torch.Tensor:
    """Whether each integer (x, y) vector from query to key (y up) lies in the closed wedge of
    ``fov`` degrees centred on ``direction``. Exact: every wedge edge is a multiple of 45 degrees."""
    x, y = vectors[..., 0], vectors[..., 1]
    sx, sy = _RAYS[round(direction - fov / 2) % 360]
    inside = sx * y - sy * x >= 0  # counter-clockwise of the first edge (a half-plane for fov=180)
    if fov < 180:
        ex, ey = _RAYS[round(direction + fov / 2) % 360]
        inside &= x * ey - y * ex >= 0  # and clockwise of the second edge
    return inside


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else "must be >= 0"


class LookHere(Component):
    name = "lookhere"
    summary = "per-head directed 2D attention masks (FOV 180/90/45) plus a distance penalty"
    paper = "LookHere, Fuller et al. NeurIPS 2024 (arXiv:2405.13985)"
    options = {
        "fov": Option(90, "field of view of every head in degrees (LookHere-180/-90/-45)", choices=(180, 90, 45)),
        "global_slope": Option(1.0, "factor on every distance penalty", validate=_positive),
        "layer_slope_first": Option(1.5, "layer slope of the first block (linear to the last)",
                                    validate=_non_negative),
        "layer_slope_last": Option(0.5, "layer slope of the last block", validate=_non_negative),
    }
    native_means = "directions and distances between the new integer positions"
    interp_means = "directions as native, distances with offsets scaled by G0/G per axis"
    scale_means = "directions as native, distances multiplied by S (= global slope times S)"

    def __init__(self, arch: Arch, fov: int, global_slope: float, layer_slope_first: float,
                 layer_slope_last: float):
        super().__init__(arch)
        self.fov = fov
        self.plan = head_plan(arch.num_heads, fov)
        layers = torch.linspace(layer_slope_first, layer_slope_last, arch.depth, dtype=torch.float64)
        self.block_slopes = [global_slope * float(s) for s in layers]  # global times layer slope
        # per head, the rays of its wedge's two edges, and per block and head the slope, for fused kernels
        edges = [(*_RAYS[round(d - fov / 2) % 360], *_RAYS[round(d + fov / 2) % 360]) for d, _ in self.plan]
        self.register_buffer("edges", torch.tensor(edges), persistent=False)
        slopes = torch.tensor(self.block_slopes)[:, None] * torch.tensor([s for _, s in self.plan])[None]
        self.register_buffer("pair_slopes", slopes.float(), persistent=False)

    def attention_bias(self, block, q, k, ctx: Context):
        return self.reuse_at_inference(block, ctx, q, lambda: self._bias(block, ctx, q))

    def bias_by_offset(self, block, ctx: Context) -> OffsetBias:
        """The same bias computed in a fused kernel, whose block mask skips the tiles outside every wedge."""
        axis, slopes = position_scale_on(ctx, self.edges.device), self.pair_slopes[block]
        return OffsetBias(lambda head, dr, dc: -slopes[head] * torch.hypot(dr * axis[0], dc * axis[1]),
                          visible=self.sees)

    def sees(self, head: torch.Tensor, dr: torch.Tensor, dc: torch.Tensor) -> torch.Tensor:
        """:func:`visible` per head for offsets query minus key (rows, columns), as a fused kernel evaluates it."""
        x, y = -dc, dr  # key minus query, y up
        inside = self.edges[head, 0] * y - self.edges[head, 1] * x >= 0
        if self.fov < 180:
            inside = inside & (x * self.edges[head, 3] - y * self.edges[head, 2] >= 0)
        return inside

    def _penalty(self, ctx: Context, device: torch.device) -> torch.Tensor:
        """(heads, M) head slope times distance for every offset of the grid, +inf outside the head's
        FOV: the part shared by every block."""
        offsets = grid_offsets(ctx.grid, device)  # query minus key, (row, col)
        vectors = torch.stack([-offsets[:, 1], offsets[:, 0]], dim=1)  # key minus query, (x, y up)
        mask = torch.stack([visible(vectors, direction, self.fov) for direction, _ in self.plan])
        distance = scaled_offsets(ctx, device).norm(dim=1)  # (M,)
        slopes = torch.tensor([s for _, s in self.plan], device=device)
        return torch.where(mask, slopes[:, None] * distance, torch.inf)

    def _bias(self, block: int, ctx: Context, q: torch.Tensor) -> torch.Tensor:
        penalty = self.reuse_at_inference("every block", ctx, q, lambda: self._penalty(ctx, q.device))
        masked = torch.finfo(q.dtype).min / 2
        per_offset = torch.where(penalty.isinf(), masked, -self.block_slopes[block] * penalty)
        return pair_bias(per_offset, ctx, q.dtype)
