"""The one ViT backbone every encoding runs on.

Parameter names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.N.norm1``, ``blocks.N.attn.qkv``, ...), so a timm DeiT/ViT state dict loads
into the ``ape`` variant unchanged and computes the same logits. Encodings differ only in how
position enters; everything else (pre-norm blocks, GELU MLP, LayerNorm eps 1e-6, class-token
readout) is shared. Attention runs through ``scaled_dot_product_attention`` with any additive
position bias as ``attn_mask``; blocks whose encoding multiplies the scores or reads the attention
probabilities (SP-ViT, iRPE contextual on values) compute attention explicitly.

The resolution is read from the input; ``mode`` says how the encoding meets a grid other than the
trained one (see :mod:`pebench.encodings.base`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from pebench.encodings import ape
from pebench.encodings.base import Arch, Context, Mode, NotApplicable
from pebench.encodings.composite import PositionEncoding
from pebench.encodings.registry import REGISTRY
from pebench.encodings.spec import EncodingSpec, parse_spec
from pebench.errors import PebenchError
from pebench.models.sizes import DEFAULT_PATCH, SIZES, check_resolution
from pebench.resolution import as_hw


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

    def forward(self, x: torch.Tensor, ctx: Context, pos: PositionEncoding) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = pos.rotate(self.index, q, k, ctx)
        bias = pos.attention_bias(self.index, q, k, ctx)
        if pos.explicit_attention(self.index) or self.probe is not None:
            out = explicit_attention(q, k, v, self.scale, bias, pos, self.index, ctx, self.probe)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, t, c))


#: bytes of attention scores materialised at once by explicit attention on a CPU (the queries are chunked to
#: fit); on a GPU chunks may take a share of the free memory instead (:func:`score_chunk_bytes`)
SCORE_CHUNK_BYTES = 64 << 20
GPU_SCORE_SHARE = 0.125


def score_chunk_bytes(device: torch.device) -> int:
    """Bytes of scores one chunk of explicit attention may hold on ``device``."""
    if device.type == "cuda":
        return max(SCORE_CHUNK_BYTES, int(torch.cuda.mem_get_info(device)[0] * GPU_SCORE_SHARE))
    return SCORE_CHUNK_BYTES


def explicit_attention(q, k, v, scale, bias, pos: PositionEncoding, block: int, ctx: Context,
                       probe: Callable | None = None) -> torch.Tensor:
    """Attention with the scores materialised, for encodings SDPA cannot express.

    softmax(scale * q.k^T * multiplier + bias) @ v + value_term; with no multiplier and no value term
    it equals SDPA (tested). Queries go in chunks whose (B, heads, rows, T) scores fit
    :func:`score_chunk_bytes`, so memory grows with the tokens, not with their square, beyond the
    (1, heads, T, T) position terms themselves.
    """
    multiplier = pos.score_multiplier(block, ctx, q)
    b, heads, tokens, _ = q.shape
    rows_per_chunk = max(1, score_chunk_bytes(q.device) // (b * heads * tokens * q.element_size()))
    outputs = []
    for start in range(0, tokens, rows_per_chunk):
        rows = slice(start, min(tokens, start + rows_per_chunk))
        scores = (q[:, :, rows] * scale) @ k.transpose(-2, -1)
        if multiplier is not None:
            scores = scores * multiplier[..., rows, :].to(scores.dtype)
        if bias is not None:
            scores = scores + bias[..., rows, :]
        attn = scores.softmax(dim=-1)
        if probe is not None:
            probe(block, attn, rows, ctx)
        out = attn @ v
        value = pos.value_term(block, attn, ctx, rows)
        outputs.append(out if value is None else out + value)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)


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

    def context(self, grid: tuple[int, int], mode: Mode) -> Context:
        return Context(grid=grid, trained_grid=self.trained_grid, mode=mode, num_prefix=self.num_prefix)

    def applicability(self, res, mode: Mode) -> str | None:
        """Why ``mode`` cannot run at resolution ``res``, or None when it can."""
        return self.pos_encoding.unsupported(self.context(self.grid_at(res), mode))

    def forward_features(self, images: torch.Tensor, mode: Mode = "interp") -> torch.Tensor:
        x, grid = self.patch_embed(images)
        ctx = self.context(grid, mode)
        if reason := self.pos_encoding.unsupported(ctx):
            raise NotApplicable(reason)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_encoding.add_to_tokens(x, ctx)
        for i, block in enumerate(self.blocks):
            x = block(x, ctx, self.pos_encoding)
            x = self.pos_encoding.after_block(i, x, ctx)
        return self.norm(x)

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
