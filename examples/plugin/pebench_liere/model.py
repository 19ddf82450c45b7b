"""A model from outside pebench: a small ViT written here, not built from pebench's backbone nor timm's,
whose attention rotates queries and keys with LieRE (Ostmeier et al., ICML 2025, arXiv:2406.10322; the
rotations are this package's :func:`~pebench_liere.lie_rotations`).

pebench runs it as ``--model py:pebench_liere.model:make`` (``@CHECKPOINT`` to load weights): the class
implements ``pebench.models.interface.ResolutionModel``, the adapter docs/plugins.md ("Your own model")
describes, and imports nothing else of pebench but what the modes mean (``position_scale``) and how a
resolution label reads (``as_hw``). It has no class token; its patches are mean-pooled, so every image
size gives the same head input. Positions are patch coordinates over the trained grid's side, scaled
as the mode says: native at the new integer positions, interp by G0/G, scale=S by S.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pebench.modes import position_scale
from pebench.resolution import as_hw
from pebench_liere import lie_rotations, rotate_patches

PATCH, TRAINED = 16, 224


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, rotations: torch.Tensor | None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        if rotations is not None:
            q, k = rotate_patches(q, rotations, 0), rotate_patches(k, rotations, 0)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, dim)
        x = x + self.proj(attended)
        return x + self.mlp(self.norm2(x))


class LieViT(nn.Module):
    """Patches embedded by a convolution, ``depth`` pre-norm blocks with LieRE-rotated attention (one pair of
    generators per block, shared by its heads), mean pooling, a linear head."""

    patch, img_size = PATCH, TRAINED
    trained_grid = (TRAINED // PATCH, TRAINED // PATCH)
    size = "lievit"

    def __init__(self, classes: int = 10, dim: int = 64, depth: int = 4, heads: int = 4, positions: bool = True):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, PATCH, PATCH)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)
        head_dim = dim // heads
        # as in LieRE's code: raw generators uniform in [0, 2 pi); their strict upper triangles make them skew
        self.generators = nn.Parameter(torch.rand(depth, 2, 1, head_dim, head_dim) * 2 * math.pi) if positions else None
        self.spec = "liere (LieViT)" if positions else "none (LieViT)"
        self._rotations: dict[tuple, list[torch.Tensor]] = {}

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    @property
    def interp_is_native(self) -> bool:
        return self.generators is None

    def grid_at(self, res) -> tuple[int, int]:
        height, width = as_hw(res)
        return height // PATCH, width // PATCH

    def applicability(self, res, mode: str) -> str | None:
        height, width = as_hw(res)
        return None if height % PATCH == 0 and width % PATCH == 0 else f"{height}x{width} px is not a multiple of 16"

    def resize_api(self, res, mode: str) -> str | None:
        return None  # nothing outside this class adapts its positions

    def position_param_count(self) -> int:
        return 0 if self.generators is None else self.generators.numel()

    def position_values_at(self, res, mode: str) -> int:
        return self.position_param_count()  # generators do not grow with the grid

    def position_free_twin(self) -> LieViT:
        first = self.blocks[0]
        return LieViT(self.num_classes, self.head.in_features, len(self.blocks), first.heads, positions=False)

    def rotations(self, grid: tuple[int, int], mode: str, device: torch.device) -> list[torch.Tensor]:
        """One (N, head_dim, head_dim) rotation per block for ``grid`` in ``mode``; kept while evaluating (the
        generators do not change then), rebuilt every step in training."""
        key = (grid, mode, device)
        if self.training or key not in self._rotations:
            rows, cols = torch.meshgrid(torch.arange(grid[0], device=device), torch.arange(grid[1], device=device),
                                        indexing="ij")
            scale = torch.tensor(position_scale(mode, self.trained_grid, grid), device=device)
            positions = torch.stack([rows, cols], -1).flatten(0, 1) * scale / torch.tensor(self.trained_grid,
                                                                                          device=device)
            built = [lie_rotations(raw, positions) for raw in self.generators]
            if self.training:
                return built
            self._rotations[key] = built
        return self._rotations[key]

    def forward(self, images: torch.Tensor, mode: str = "native") -> torch.Tensor:
        x = self.embed(images)
        grid = tuple(x.shape[-2:])
        x = x.flatten(2).transpose(1, 2)
        rotations = [None] * len(self.blocks) if self.generators is None else self.rotations(grid, mode, x.device)
        for block, rotation in zip(self.blocks, rotations, strict=True):
            x = block(x, rotation)
        return self.head(self.norm(x).mean(dim=1))

    def train(self, mode: bool = True) -> LieViT:
        self._rotations.clear()  # generators may change from here on
        return super().train(mode)


def make(checkpoint: str | None = None) -> LieViT:
    """The factory ``py:pebench_liere.model:make`` names: seeded random weights, or a state dict's."""
    torch.manual_seed(0)
    model = LieViT()
    if checkpoint is not None:
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    return model.eval()
