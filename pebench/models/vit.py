"""The one ViT backbone every encoding runs on.

Parameter names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.N.norm1``, ``blocks.N.attn.qkv``, ...), so a timm DeiT/ViT state dict loads
into the ``ape`` variant unchanged and computes the same logits. Encodings differ only in how
position enters; everything else (pre-norm blocks, GELU MLP, LayerNorm eps 1e-6, class-token
readout) is shared. Attention runs through ``scaled_dot_product_attention`` with any additive
position bias as ``attn_mask``; blocks whose encoding multiplies the scores or reads the attention
probabilities (SP-ViT, iRPE contextual on values) take the paths of :mod:`pebench.models.attention`.

The resolution is read from the input; ``mode`` says how the encoding meets a grid other than the
trained one (see :mod:`pebench.encodings.base`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from pebench import kernels
from pebench.encodings import ape
from pebench.encodings.base import Arch, Context, Mode, NotApplicable
from pebench.encodings.composite import PositionEncoding
from pebench.encodings.registry import REGISTRY
from pebench.encodings.spec import EncodingSpec, parse_spec
from pebench.errors import PebenchError
from pebench.models.attention import Terms, attend, flex_allowed, route
from pebench.models.sizes import DEFAULT_PATCH, SIZES, check_resolution
from pebench.resolution import as_hw
from pebench.settings import ATTENTION_PATHS


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int, in_chans: int = 3):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        check_resolution(*images.shape[-2:], self.patch)
        x = self.proj(images)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, index: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.index = index
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        #: called with (block, attention probabilities (B, heads, rows, T), rows, ctx) while set
        #: (pebench.measure.diagnostics.probing); attention then runs explicitly so that the weights exist
        self.probe: Callable | None = None
        #: while set (pebench.measure.breakdown), ``clock(section)`` times the position terms and attention
        self.clock: Callable[[str], AbstractContextManager] | None = None

    def forward(self, x: torch.Tensor, ctx: Context, pos: PositionEncoding) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        with timed(self.clock, "position"):
            q, k = pos.rotate(self.index, q, k, ctx)
            explicit = self.probe is not None or pos.explicit_attention(self.index)
            may_fuse = self.probe is None and flex_allowed(ctx, pos, self.index)
            bias, gathered, formulas = pos.split_bias(self.index, q, k, ctx) if may_fuse else \
                (pos.attention_bias(self.index, q, k, ctx), [], [])
            multiplier = pos.score_multiplier(self.index, ctx, q) if explicit else None
            terms = Terms(bias, multiplier, gathered, formulas)
            path = route(terms, explicit, may_fuse)
        with timed(self.clock, f"attention:{path}"):
            out = attend(q, k, v, self.scale, terms, path, pos, self.index, ctx, self.probe)
        return self.proj(out.transpose(1, 2).reshape(b, t, c))


def timed(clock: Callable[[str], AbstractContextManager] | None, section: str) -> AbstractContextManager:
    return nullcontext() if clock is None else clock(section)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, index: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, index)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, ctx: Context, pos: PositionEncoding) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), ctx, pos)
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT with a pluggable position encoding; ``forward(images, mode)`` runs at the images' resolution."""

    def __init__(
        self,
        encoding: str | EncodingSpec,
        size: str = "micro",
        num_classes: int = 1000,
        img_size: int = 224,
        patch: int = DEFAULT_PATCH,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        if size not in SIZES:
            raise PebenchError(f"unknown model size '{size}'; choose one of: {', '.join(SIZES)}")
        if img_size % patch:
            raise PebenchError(f"training resolution {img_size} is not a multiple of the patch size {patch}")
        spec = parse_spec(encoding)
        dims = SIZES[size]
        keeps_class_token = all(REGISTRY[c.name].keeps_class_token(c.kwargs) for c in spec.components)
        self.size, self.patch, self.img_size = size, patch, img_size
        self.trained_grid = (img_size // patch, img_size // patch)
        self.num_prefix = 1 if keeps_class_token else 0
        self._attention_path = "auto"  # pebench.models.attention; set through attention_path

        self.patch_embed = PatchEmbed(patch, dims.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims.dim)) if keeps_class_token else None
        arch = Arch(dims.dim, dims.depth, dims.num_heads, self.trained_grid, self.num_prefix)
        self.pos_encoding = PositionEncoding(spec, arch)
        self.blocks = nn.ModuleList(Block(dims.dim, dims.num_heads, mlp_ratio, i) for i in range(dims.depth))
        self.norm = nn.LayerNorm(dims.dim, eps=1e-6)
        self.head = nn.Linear(dims.dim, num_classes)
        self._init_weights()
        self.register_state_dict_post_hook(_to_timm_names)
        self.register_load_state_dict_pre_hook(_from_timm_names)

    @property
    def spec(self) -> EncodingSpec:
        return self.pos_encoding.spec

    def _init_weights(self) -> None:
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for name, module in self.named_modules():
            if name.startswith("pos_encoding"):
                continue  # encodings initialise themselves
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    @property
    def interp_is_native(self) -> bool:
        """True when interp mode runs the native computation (nothing to interpolate)."""
        return self.pos_encoding.interp_is_native

    def position_param_count(self) -> int:
        return sum(p.numel() for p in self.pos_encoding.parameters())

    def grid_at(self, res) -> tuple[int, int]:
        """The patch grid of a resolution (label, int or (height, width))."""
        height, width = as_hw(res)
        return (height // self.patch, width // self.patch)

    def position_values_at(self, res, mode: Mode) -> int:
        """Position values in use at ``res``: an interpolated APE grid or BEiT table grows, a PEG does not."""
        return self.pos_encoding.position_values_at(self.context(self.grid_at(res), mode))

    def resize_api(self, res, mode: Mode) -> str | None:
        """Only timm models name an external resizing API; pebench's encodings adapt themselves."""
        return None

    def position_free_twin(self) -> VisionTransformer:
        """The same architecture without position information (``none``): the cost reference."""
        return build_model(self.size, "none", num_classes=self.num_classes, img_size=self.img_size, patch=self.patch)

    def context(self, grid: tuple[int, int], mode: Mode, fused_kernels: bool = False) -> Context:
        return Context(grid=grid, trained_grid=self.trained_grid, mode=mode, num_prefix=self.num_prefix,
                       fused_kernels=fused_kernels)

    def applicability(self, res, mode: Mode) -> str | None:
        """Why ``mode`` cannot run at resolution ``res``, or None when it can."""
        return self.pos_encoding.unsupported(self.context(self.grid_at(res), mode))

    def forward_features(self, images: torch.Tensor, mode: Mode = "interp") -> torch.Tensor:
        x, grid = self.patch_embed(images)
        ctx = self.context(grid, mode, fused_kernels=kernels.wanted(self.attention_path, images.device))
        if reason := self.pos_encoding.unsupported(ctx):
            raise NotApplicable(reason)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        with timed(self.clock, "position"):
            x = self.pos_encoding.add_to_tokens(x, ctx)
        for i, block in enumerate(self.blocks):
            x = block(x, ctx, self.pos_encoding)
            with timed(self.clock, "position"):
                x = self.pos_encoding.after_block(i, x, ctx)
        return self.norm(x)

    @property
    def attention_path(self) -> str:
        """How multiplying blocks attend and whether kernels fuse: "auto", "reference" or "flex"
        (:mod:`pebench.models.attention`, :mod:`pebench.kernels`)."""
        return self._attention_path

    @attention_path.setter
    def attention_path(self, path: str) -> None:
        if path not in ATTENTION_PATHS:
            raise PebenchError(f"unknown attention path '{path}'; use {', '.join(ATTENTION_PATHS)}")
        self._attention_path = path

    @property
    def clock(self) -> Callable[[str], AbstractContextManager] | None:
        """The section clock of :mod:`pebench.measure.breakdown`, or None (nothing timed)."""
        return self.blocks[0].attn.clock

    @clock.setter
    def clock(self, clock: Callable[[str], AbstractContextManager] | None) -> None:
        for block in self.blocks:
            block.attn.clock = clock

    def forward(self, images: torch.Tensor, mode: Mode = "interp") -> torch.Tensor:
        x = self.forward_features(images, mode)
        pooled = x[:, 0] if self.cls_token is not None else x.mean(dim=1)
        return self.head(pooled)


_INTERNAL_APE = f"pos_encoding.ape.{ape.TIMM_NAME}"


def _to_timm_names(module, state_dict, prefix, local_metadata) -> None:
    """Save the learned APE grid as timm's top-level ``pos_embed``."""
    if prefix + _INTERNAL_APE in state_dict:
        state_dict[prefix + ape.TIMM_NAME] = state_dict.pop(prefix + _INTERNAL_APE)


def _from_timm_names(module, state_dict, prefix, *args) -> None:
    if prefix + ape.TIMM_NAME in state_dict:
        state_dict[prefix + _INTERNAL_APE] = state_dict.pop(prefix + ape.TIMM_NAME)


def build_model(size: str = "micro", encoding: str | EncodingSpec = "ape", **kwargs) -> VisionTransformer:
    return VisionTransformer(encoding, size=size, **kwargs)
