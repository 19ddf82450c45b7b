"""Why accuracy moves with resolution: attention statistics and pictures of the position encoding.

Per model, resolution and mode, on the first ``n`` images of the same streamed data as evaluation:

- per block and head, over the patch queries: the *mean attention distance* (the attention-weighted
  distance to the patch keys, in patches and as a fraction of the grid's longer side; ViT, Dosovitskiy et
  al. 2021, Fig. 7), the *attention entropy* in nats over all keys (LookHere, Fuller et al. 2024,
  follow both as the resolution grows), and the share of attention on the class token;
- the class token's attention over the patches in the last block, for the first few images;
- for encodings that add a position embedding to the tokens (learned APE, sin-cos): the cosine
  similarity of a few reference patches' embeddings to every patch's, on the trained grid and as
  used at the target grid and mode (ViT's Fig. 7, centre);
- for encodings with an additive attention bias that does not depend on the content (relative
  tables, ALiBi, CPB, FIRE, LookHere, ...): the bias from the centre patch to every patch, per head,
  i.e. the bias as a function of the 2D offset (CPVT discusses the learned locality of its second
  block's attention, seed 000).

The statistics come from the attention probabilities themselves (``Attention.probe``), reduced
chunk by chunk, so memory stays that of explicit attention. Records are of kind ``diagnostics``
(:mod:`pebench.results`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from pebench.encodings.base import Context

#: reference patches of the similarity maps, as fractions of the grid (row, column)
REFERENCE_POINTS = ((0.5, 0.5), (0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0))


@contextmanager
def probing(net, probe):
    """Call ``probe(block, attention, rows, ctx)`` from every block's attention while inside."""
    blocks = [block.attn for block in net.blocks]
    for attn in blocks:
        attn.probe = probe
    try:
        yield
    finally:
        for attn in blocks:
            attn.probe = None


class AttentionTally:
    """Running attention statistics of one (model, mode) cell over the images of a pass."""

    def __init__(self, model, mode: str, maps: int):
        self.model, self.mode, self.maps_wanted = model, mode, maps
        depth, heads = len(model.net.blocks), model.net.blocks[0].attn.num_heads
        self.distance = torch.zeros(depth, heads, dtype=torch.float64)
        self.entropy = torch.zeros(depth, heads, dtype=torch.float64)
        self.to_class_token = torch.zeros(depth, heads, dtype=torch.float64)
        self.queries = torch.zeros(depth, dtype=torch.float64)  # patch queries seen per block
        self.maps: list[dict] = []
        self.n = 0
        self.grid: tuple[int, int] | None = None
        self._labels: torch.Tensor | None = None
        self._offsets: dict = {}

    def step(self, x: torch.Tensor, labels: torch.Tensor, autocast) -> None:
        self._labels = labels
        with probing(self.model.net, self._observe), autocast:
            self.model.net(x, self.mode)
        self.n += len(labels)

    def _patch_distances(self, ctx: Context, rows: range, device) -> torch.Tensor:
        """(rows, patches) Euclidean distance in patches from each query patch to every patch."""
        key = (ctx.grid, rows.start, rows.stop, str(device))
        if key not in self._offsets:
            gh, gw = ctx.grid
            index = torch.arange(gh * gw, device=device)
            coords = torch.stack([index // gw, index % gw], dim=1).float()
            self._offsets = {key: torch.cdist(coords[rows.start : rows.stop], coords)}
        return self._offsets[key]

    def _observe(self, block: int, attn: torch.Tensor, rows: slice, ctx: Context) -> None:
        prefix = ctx.num_prefix
        self.grid = ctx.grid
        attn = attn.float()
        first_patch_row = max(rows.start, prefix)
        if prefix and rows.start == 0 and block == len(self.distance) - 1 and len(self.maps) < self.maps_wanted:
            maps = attn[:, :, 0, prefix:].mean(dim=1).cpu()
            for image, label in zip(maps[: self.maps_wanted - len(self.maps)], self._labels.tolist(), strict=False):
                self.maps.append({"label": int(label), "map": _rounded(image.view(*ctx.grid), 5)})
        if first_patch_row >= rows.stop:
            return
        queries = attn[:, :, first_patch_row - rows.start :]  # (B, heads, patch rows, T)
        patches = queries[..., prefix:]
        distances = self._patch_distances(ctx, range(first_patch_row - prefix, rows.stop - prefix), attn.device)
        mass = patches.sum(dim=-1).clamp_min(1e-12)
        mean_distance = (patches * distances).sum(dim=-1) / mass
        entropy = -(queries * queries.clamp_min(1e-30).log()).sum(dim=-1)
        self.distance[block] += mean_distance.sum(dim=(0, 2)).double().cpu()
        self.entropy[block] += entropy.sum(dim=(0, 2)).double().cpu()
        if prefix:
            self.to_class_token[block] += queries[..., 0].sum(dim=(0, 2)).double().cpu()
        self.queries[block] += queries.shape[0] * queries.shape[2]

    def layers(self) -> list[dict]:
        """Per block: each statistic's mean over heads and its value per head."""
        side = max(self.grid)
        keys = self.grid[0] * self.grid[1] + self.model.net.num_prefix
        out = []
        for block, count in enumerate(self.queries.tolist()):
            count = max(count, 1.0)
            distance = (self.distance[block] / count).tolist()
            entropy = (self.entropy[block] / count).tolist()
            layer = {"block": block,
                     "attention_distance": _summary(distance),
                     "attention_distance_fraction": _summary([d / side for d in distance]),
                     "entropy": _summary(entropy),
                     "max_entropy": round(math.log(keys), 4)}
            if self.model.net.num_prefix:
                layer["class_token_attention"] = _summary((self.to_class_token[block] / count).tolist())
            out.append(layer)
        return out


def _summary(values: list[float]) -> dict:
    return {"mean": round(sum(values) / len(values), 5), "per_head": [round(v, 5) for v in values]}


def _rounded(grid: torch.Tensor, digits: int) -> list[list[float | None]]:
    """A 2D tensor as nested lists; non-finite values (masked biases) as None, JSON's null."""
    return [[round(v, digits) if math.isfinite(v) else None for v in row] for row in grid.tolist()]


def _reference_indices(grid: tuple[int, int]) -> list[tuple[int, int]]:
    return list(dict.fromkeys((round(r * (grid[0] - 1)), round(c * (grid[1] - 1))) for r, c in REFERENCE_POINTS))


@torch.inference_mode()
def embedding_similarity(net, grid: tuple[int, int], mode: str) -> dict | None:
    """Cosine similarity of reference patches' added position embeddings to every patch's; None when
    the encoding adds nothing to the tokens."""
    ctx = net.context(grid, mode)
    tokens = net.num_prefix + grid[0] * grid[1]
    width = net.blocks[0].attn.qkv.in_features
    device = next(net.parameters()).device
    added = net.pos_encoding.add_to_tokens(torch.zeros(1, tokens, width, device=device), ctx)[0, net.num_prefix :]
    if not added.abs().sum():
        return None
    unit = torch.nn.functional.normalize(added.float(), dim=-1)
    references = _reference_indices(grid)
    maps = [_rounded((unit @ unit[r * grid[1] + c]).view(*grid).cpu(), 4) for r, c in references]
    return {"grid": list(grid), "references": [list(r) for r in references], "maps": maps}


@torch.inference_mode()
def bias_by_offset(net, grid: tuple[int, int], mode: str, blocks: list[int]) -> dict | None:
    """Per chosen block and head, the additive attention bias from the centre patch to every patch
    (so the map is the bias as a function of the 2D offset); None without a bias, and a reason when
    the bias depends on the queries or keys (contextual encodings such as iRPE's)."""
    ctx = net.context(grid, mode)
    attn = net.blocks[0].attn
    tokens = net.num_prefix + grid[0] * grid[1]
    device = next(net.parameters()).device
    generator = torch.Generator().manual_seed(0)

    def bias_with_random_content(block: int):
        q, k = (torch.randn(1, attn.num_heads, tokens, attn.head_dim, generator=generator).to(device)
                for _ in range(2))
        return net.pos_encoding.attention_bias(block, q, k, ctx)

    centre = net.num_prefix + (grid[0] // 2) * grid[1] + grid[1] // 2
    maps = []
    for block in blocks:
        first, second = bias_with_random_content(block), bias_with_random_content(block)
        if first is None:
            maps.append(None)
            continue
        if not torch.equal(first.isfinite(), second.isfinite()) or not torch.allclose(
                first.nan_to_num(), second.nan_to_num(), atol=1e-5):
            return {"reason": "the bias depends on the queries and keys (contextual), so it has no one map"}
        row = first[0, :, centre, net.num_prefix :].float().cpu()
        maps.append([_rounded(head.view(*grid), 3) for head in row])
    if all(m is None for m in maps):
        return None
    return {"grid": list(grid), "centre": [grid[0] // 2, grid[1] // 2], "blocks": blocks, "maps": maps}


def position_pictures(net, grid: tuple[int, int], mode: str) -> dict:
    """The position encoding's pictures at ``grid`` in ``mode``, and at the trained grid for comparison."""
    depth = len(net.blocks)
    blocks = sorted({0, 1 if depth > 1 else 0, depth - 1})  # CPVT looks at the second block
    return {"embedding_similarity": embedding_similarity(net, grid, mode),
            "embedding_similarity_trained": embedding_similarity(net, net.trained_grid, "native"),
            "bias_by_offset": bias_by_offset(net, grid, mode, blocks)}
