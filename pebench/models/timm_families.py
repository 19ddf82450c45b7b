"""The timm families pebench can run at another resolution, and what native and interp mean for each.

Each family says what its two resolution modes mean and which timm API implements them
(recorded in every result), mirroring pebench's own encodings:

- learned APE (ViT, DeiT, DeiT-III's ``no_embed_class``): interp only, timm's
  ``resample_abs_pos_embed`` (bicubic) via ``dynamic_img_size``; native off the trained grid is not
  applicable.
- NaFlexViT (``naflexvit_*``, SigLIP-2 NaFlex): a learned grid (16x16, 256 px) that timm's
  ``NaFlexEmbeds`` resamples to every input's grid itself: interp = that resampling (F.interpolate,
  bicubic or SigLIP's bilinear, antialiased; ``par``: to a max(h, w) square, then the top-left crop;
  ``parfac``: two 1-D tables, linear); native off the stored grid is not applicable.
- RoPE (EVA-02, RoPE-ViT's ``vit_*_rope*`` ports incl. the register/GAP ``*_rope_reg*_gap_256``,
  Perception Encoder ``vit_pe_*``; Heo et al., ECCV 2024): native = rotation angles at the new
  integer positions; interp = positions scaled by G0/G (axial: timm's ``ref_feat_shape``; mixed:
  timm has no such option, pebench scales the grid it passes to ``get_mixed_freqs``). A model that
  also has a learned APE (EVA-02, PE) is not applicable natively off-grid.
- DINOv3-style RoPE (``vit_*_dinov3*``, ``vit_*_lingbot``): timm's ``RotaryEmbeddingDinoV3`` puts
  patch centres in [-1, 1] per image, so interp = timm's own forward (spacing 2/G); native keeps the
  trained spacing 2/G0 about the centre (timm's coordinates stretched by G/G0 per axis, beyond [-1, 1]).
- relative position table (BEiT; Bao et al., ICLR 2022): interp = ``set_input_size`` ->
  ``resize_rel_pos_bias_table``; native = the trained table read with offsets clamped to its range.
- relative position MLP (``vit_relpos_*``, log-spaced coordinates as in Swin-v2): native = timm's
  ``set_input_size`` (the MLP at new integer offsets); interp = offsets scaled by G0/G.
- continuous position bias (Swin-v2; Liu et al., CVPR 2022): windows scale with the grid (timm's
  ``set_input_size``); native keeps the trained offset units, interp normalises offsets by the new
  window (timm's default for models without a pretrained window size).
- PEG (Twins-PCPVT; Chu et al., NeurIPS 2021, after CPVT): convolutions over any grid, so both
  modes run the same computation.

A model no family lists is run by what its class says (:func:`family_by_class`): timm's plain
``VisionTransformer`` with a learned ``pos_embed`` is a learned-APE ViT; any other class with
``set_input_size`` (Swin v1, MaxViT / CoAtNet, EfficientViT-MSRA, ...) runs interp through that method
alone. For those pebench cannot tell what native would mean, and it cannot build them without position
information, so their profiles carry no ratio to ``none``.


Every ``configure`` hook adapts a built timm model to (grid, mode) before a forward; the
``strip_position`` hooks and ``position_free_kwargs`` build the same architecture without position
information, the cost reference of `pebench profile`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import torch
from torch import nn

from pebench.encodings.base import clamped_offset_index, grid_offsets


class TrainedTimm(Protocol):
    """What a ``configure`` hook reads of the adapter (:class:`pebench.models.timm_adapter.TimmModel`):
    the timm network and its position parameters as trained, from which every resolution starts."""

    net: nn.Module
    patch: int
    img_size: int
    trained_grid: tuple[int, int]
    trained_tables: list[torch.Tensor]  # BEiT relative tables
    trained_cpb: list[tuple[int, float]]  # Swin-v2: (window, offset divisor) per CPB module
    trained_pos_embed: torch.Tensor | None
    trained_position_state: dict[str, torch.Tensor]  # every position tensor by state-dict key


@dataclass(frozen=True)
class Family:
    name: str
    patterns: tuple[str, ...]  # timm model-name globs
    encoding: str  # what the records call the position encoding
    native: str | None  # how native mode works off the trained grid; None = not applicable
    interp: str  # how interp mode works
    create_kwargs: tuple[tuple[str, object], ...] = ()
    position_free_kwargs: tuple[tuple[str, object], ...] = ()  # timm kwargs that drop position information
    #: removes position information from a built model, where no timm kwarg does
    strip_position: Callable[[nn.Module], None] | None = None
    #: adapts the timm model to (grid, mode) before a forward; None when timm's dynamic_img_size does it all
    configure: Callable[[TrainedTimm, tuple[int, int], str], None] | None = None
    excluded: tuple[str, ...] = ()  # globs of this family's names pebench cannot run
    #: an unlisted class run through timm's set_input_size alone: native unknown, position tensors found by
    #: their names, no position-free twin
    generic: bool = False


def _configure_rope(model: TrainedTimm, grid: tuple[int, int], mode: str) -> None:
    """Point timm's RoPE module at native (integer) or interp (scaled by G0/G) positions for ``grid``."""
    from timm.layers.pos_embed_sincos import RotaryEmbeddingMixed, get_mixed_freqs, get_mixed_grid

    rope, trained_grid = model.net.rope, model.trained_grid
    interp = mode == "interp" and grid != trained_grid
    if rope is None:  # the position-free twin
        return
    if not isinstance(rope, RotaryEmbeddingMixed):
        rope.ref_feat_shape = list(trained_grid) if interp else None
        return
    if not interp:
        rope.__dict__.pop("get_embed", None)  # back to timm's own method
        return
    scale_rows, scale_cols = trained_grid[0] / grid[0], trained_grid[1] / grid[1]

    def scaled_embed(shape=None, dtype=None):
        t_x, t_y = get_mixed_grid(shape, grid_indexing=rope.grid_indexing, device=rope.freqs.device)
        return get_mixed_freqs(rope.freqs, t_x * scale_cols, t_y * scale_rows, dtype=dtype)

    rope.get_embed = scaled_embed  # an instance attribute: this model only, undone by native mode


def _configure_dinov3(model: TrainedTimm, grid: tuple[int, int], mode: str) -> None:
    """DINOv3 RoPE: timm normalises patch centres to [-1, 1] per image (interp: spacing 2/G). Native
    stretches those coordinates about the image centre, timm's origin, by d/d0 per axis (d: timm's
    normaliser, the grid side for 'separate'): neighbours keep the trained spacing 2/G0 and the centre
    stays at 0 (the origin matters: class and register tokens are not rotated)."""
    from timm.layers.pos_embed_sincos import _build_grid

    rope = model.net.rope
    if rope is None:  # the position-free twin
        return
    if mode == "interp" or grid == model.trained_grid:
        rope.__dict__.pop("get_embed", None)  # back to timm's own method
        return

    def normaliser(shape):
        how = rope.normalize_coords
        return list(shape) if how == "separate" else [float(max(shape) if how == "max" else min(shape))] * 2

    stretch = torch.tensor([d / d0 for d, d0 in zip(normaliser(grid), normaliser(model.trained_grid), strict=True)])
    stretch = stretch.flip(0) if rope.grid_indexing == "xy" else stretch  # coordinate channels (w, h)

    def native_embed(shape=None, dtype=None):
        coords = _build_grid(list(shape), grid_type="centered", grid_offset=rope.grid_offset, ndim=2,
                             grid_indexing=rope.grid_indexing, normalize_coords=rope.normalize_coords)
        embed = torch.cat(rope._get_pos_embed_from_coords(coords.flatten(0, -2) * stretch), dim=-1)
        return embed if dtype is None else embed.to(dtype)

    rope.get_embed = native_embed  # an instance attribute: this model only, undone by interp mode


def clamped_relative_index(grid: tuple[int, int], trained_grid: tuple[int, int]) -> torch.Tensor:
    """BEiT's relative-position index for ``grid`` into a table trained on ``trained_grid``, offsets
    clamped to the trained range; the last three table rows stay the class-token entries. Equals timm's
    ``gen_relative_position_index`` when the grids are equal."""
    patches = grid[0] * grid[1]
    table_rows = (2 * trained_grid[0] - 1) * (2 * trained_grid[1] - 1) + 3
    index = torch.empty(patches + 1, patches + 1, dtype=torch.long)
    index[1:, 1:] = clamped_offset_index(grid, trained_grid, torch.device("cpu"))
    index[0, :] = table_rows - 3
    index[:, 0] = table_rows - 2
    index[0, 0] = table_rows - 1
    return index


def _configure_relpos_mlp(model: TrainedTimm, grid: tuple[int, int], mode: str) -> None:
    """vit_relpos: native = timm's set_input_size (the MLP at the new integer offsets); interp = the
    same MLP at offsets scaled by G0/G, in timm's 'cr' log space sign(x) log(1 + |x|)."""
    net = model.net
    net.set_input_size(img_size=(grid[0] * model.patch, grid[1] * model.patch))
    for module in relpos_mlps(net):
        module.init_non_persistent_buffers()  # integer offsets again, even if the grid did not change
    if mode != "interp" or grid == model.trained_grid:
        return
    scale = torch.tensor([model.trained_grid[0] / grid[0], model.trained_grid[1] / grid[1]])
    offsets = grid_offsets(grid, torch.device("cpu")).float() * scale  # row-major, (row, col)
    coords = offsets.view(2 * grid[0] - 1, 2 * grid[1] - 1, 2)
    log_coords = torch.sign(coords) * torch.log1p(coords.abs())
    for module in relpos_mlps(net):
        module.rel_coords_log.copy_(log_coords.to(module.rel_coords_log))


def relpos_mlps(net: nn.Module) -> list[nn.Module]:
    from timm.layers.pos_embed_rel import RelPosMlp

    return [m for m in net.modules() if isinstance(m, RelPosMlp)]


def _strip_relpos(net: nn.Module) -> None:
    net.shared_rel_pos = None
    for block in net.blocks:
        block.attn.rel_pos = None


class _NoPositionConv(nn.Module):
    """Stands in for Twins' PosConv (x, size) -> x + conv(x) in a model without position information."""

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        return x


def _strip_peg(net: nn.Module) -> None:
    net.pos_block = nn.ModuleList(_NoPositionConv() for _ in net.pos_block)


def cpb_modules(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if hasattr(m, "cpb_mlp")]


def cpb_divisor(module: nn.Module) -> float:
    """What timm divides relative offsets by before the log transform (pretrained window - 1, else window - 1)."""
    pretrained = module.pretrained_window_size[0]
    return max((pretrained if pretrained > 0 else module.window_size[0]) - 1, 1)


def _configure_cpb(model: TrainedTimm, grid: tuple[int, int], mode: str) -> None:
    """Swin-v2: timm's set_input_size scales every stage's window with the grid. Native keeps the
    trained offset units (offsets beyond the trained window extrapolate the CPB MLP); interp scales
    them by (w - 1) / (w0 - 1) into the trained range - for models without a pretrained window size
    that is timm's own behaviour."""
    net = model.net
    net.set_input_size(img_size=(grid[0] * model.patch, grid[1] * model.patch))
    for module, (trained_window, trained_divisor) in zip(cpb_modules(net), model.trained_cpb, strict=True):
        divisor = trained_divisor
        if mode == "interp":
            divisor *= (module.window_size[0] - 1) / max(trained_window - 1, 1)
        module.pretrained_window_size = (divisor + 1, divisor + 1)  # timm divides by pretrained - 1
        module.init_non_persistent_buffers()


class _ZeroBias(nn.Module):
    """Stands in for Swin-v2's CPB MLP: a constant bias, so attention sees no position."""

    def __init__(self, num_heads: int):
        super().__init__()
        self.num_heads = num_heads

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return coords.new_zeros(*coords.shape[:-1], self.num_heads)


def _strip_cpb(net: nn.Module) -> None:
    for module in cpb_modules(net):
        module.cpb_mlp = _ZeroBias(module.num_heads)


def table_modules(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(getattr(m, "relative_position_bias_table", None), nn.Parameter)]


def _configure_table(model: TrainedTimm, grid: tuple[int, int], mode: str) -> None:
    """BEiT: interp = timm's set_input_size (resize_rel_pos_bias_table) from the trained tables;
    native = the trained tables read through a clamped index. Each change starts from the trained
    state, so resolutions visited earlier never compound interpolation."""
    from timm.models.beit import gen_relative_position_index

    net, trained = model.net, model.trained_grid
    tables = table_modules(net)
    with torch.no_grad():
        for module, table in zip(tables, model.trained_tables, strict=True):
            module.relative_position_bias_table = nn.Parameter(table.clone(), requires_grad=False)
            _set_window(module, trained, gen_relative_position_index(trained))
        if model.trained_pos_embed is not None:
            net.pos_embed = nn.Parameter(model.trained_pos_embed.clone(), requires_grad=False)
        net.patch_embed.set_input_size(img_size=(model.img_size, model.img_size))
        res = (grid[0] * model.patch, grid[1] * model.patch)
        if mode == "interp":
            net.set_input_size(img_size=res)
            return
        net.patch_embed.set_input_size(img_size=res)
        for module in tables:
            _set_window(module, grid, clamped_relative_index(grid, trained))


def _set_window(module: nn.Module, window: tuple[int, int], index: torch.Tensor) -> None:
    module.window_size = window
    if hasattr(module, "window_area"):
        module.window_area = window[0] * window[1]
    if hasattr(module, "num_relative_distance"):
        module.num_relative_distance = module.relative_position_bias_table.shape[0]
    module.register_buffer("relative_position_index", index.to(module.relative_position_bias_table.device),
                           persistent=False)


FAMILIES: tuple[Family, ...] = (
    Family(
        name="learned APE",
        patterns=("deit_*", "deit3_*", "vit_tiny_patch16_*", "vit_small_patch16_*", "vit_base_patch16_*",
                  "vit_large_patch16_*", "vit_base_patch32_*", "vit_small_patch32_*"),
        encoding="timm learned APE (pos_embed)",
        native=None,
        interp="resample_abs_pos_embed (bicubic) via dynamic_img_size",
        create_kwargs=(("dynamic_img_size", True),),
        position_free_kwargs=(("pos_embed", "none"),),
        excluded=("*reg*_gap*",),
    ),
    Family(
        name="NaFlexViT",
        patterns=("naflexvit_*",),
        # RADIO's 128x128 table is trained through random crops (CPE) and read top-left at inference:
        # neither mode means what it does here
        excluded=("*radio*",),
        encoding="timm NaFlexViT learned grid (pos_embed, or factorized pos_embed_y/x), resampled per input",
        native=None,
        interp="NaFlexEmbeds resamples the learned grid: F.interpolate (bicubic; siglip: bilinear; antialias), "
               "par: max(h, w) square then top-left crop; parfac: 1-D linear per axis",
        position_free_kwargs=(("pos_embed", "none"),),
    ),
    Family(
        name="RoPE",
        patterns=("eva02_*", "vit_*_rope_*", "vit_pe_*"),
        encoding="timm RoPE (axial or mixed, some with learned APE)",
        native="rotation angles at the new integer positions",
        interp="positions scaled by G0/G (axial: ref_feat_shape; mixed: pebench scales get_mixed_grid)",
        create_kwargs=(("dynamic_img_size", True),),
        position_free_kwargs=(("use_rot_pos_emb", False), ("use_abs_pos_emb", False)),
        configure=_configure_rope,
    ),
    Family(
        name="RoPE (DINOv3)",
        patterns=("vit_*_dinov3*", "vit_*_lingbot"),
        encoding="timm DINOv3 RoPE (patch centres normalised to [-1, 1] per image)",
        native="patch-centre spacing kept at the trained 2/G0 (timm's coordinates stretched by G/G0 about the centre)",
        interp="timm's own per-image normalisation to [-1, 1] (spacing 2/G)",
        create_kwargs=(("dynamic_img_size", True),),
        position_free_kwargs=(("use_rot_pos_emb", False), ("use_abs_pos_emb", False)),
        configure=_configure_dinov3,
    ),
    Family(
        name="relative table (BEiT)",
        patterns=("beit_*", "beitv2_*"),
        encoding="timm BEiT relative position bias table",
        native="trained table, offsets clamped to the trained range",
        interp="set_input_size -> resize_rel_pos_bias_table",
        position_free_kwargs=(("use_rel_pos_bias", False), ("use_shared_rel_pos_bias", False),
                              ("use_abs_pos_emb", False)),
        configure=_configure_table,
    ),
    Family(
        name="relative MLP (vit_relpos)",
        patterns=("vit_relpos_*",),
        encoding="timm log-coordinate relative position MLP",
        native="set_input_size -> RelPosMlp at the new integer offsets",
        interp="RelPosMlp at offsets scaled by G0/G (pebench rewrites rel_coords_log)",
        strip_position=_strip_relpos,
        configure=_configure_relpos_mlp,
    ),
    Family(
        name="CPB (Swin-v2)",
        patterns=("swinv2_tiny_*", "swinv2_small_*", "swinv2_base_*", "swinv2_large_*"),
        encoding="timm Swin-v2 continuous position bias (log-spaced CPB MLP)",
        native="set_input_size (windows scale with the grid), CPB at offsets in trained units",
        interp="set_input_size, CPB offsets normalised by the new window (timm's default)",
        strip_position=_strip_cpb,
        configure=_configure_cpb,
    ),
    Family(
        name="PEG (Twins-PCPVT)",
        patterns=("twins_pcpvt_*",),
        encoding="timm Twins-PCPVT conditional position encoding (PosConv)",
        native="the convolutions run over the larger grid",
        interp="the convolutions run over the larger grid",
        strip_position=_strip_peg,
    ),
)
# sapiens2: trained on a non-square 1024x768 grid, which pebench's square trained grid cannot state
_EXCLUDED = ("*relpos*rpn*", "*clip*", "*sapiens2*")


def family_of(name: str) -> Family | None:
    if any(fnmatch.fnmatch(name, pattern) for pattern in _EXCLUDED):
        return None
    # the most specific family first: vit_base_patch16_rope_224 is RoPE, not a plain ViT
    for family in reversed(FAMILIES):
        if any(fnmatch.fnmatch(name, p) for p in family.patterns):
            return None if any(fnmatch.fnmatch(name, p) for p in family.excluded) else family
    return None


#: parts of a state-dict key that mark a position tensor in timm's classes
POSITION_KEY_PARTS = ("pos_embed", "relative_position_bias_table", "rel_pos", "pos_block", "rope", "cpb_mlp")


def position_state(net: nn.Module) -> dict[str, torch.Tensor]:
    """The position tensors of a timm model, found by their state-dict keys."""
    return {key: value for key, value in net.state_dict().items() if any(part in key for part in POSITION_KEY_PARTS)}


def _configure_by_set_input_size(model: TrainedTimm, grid: tuple[int, int], mode: str) -> None:
    """An unlisted class: back to the trained size and position tensors, then timm's set_input_size to
    ``grid``, so that resolutions visited earlier never compound interpolation."""
    net = model.net
    with torch.no_grad():
        net.set_input_size(img_size=(model.img_size, model.img_size))
        # assigned, not copied in place: set_input_size under inference_mode leaves inference tensors behind
        trained = {key: value.clone() for key, value in model.trained_position_state.items()}
        net.load_state_dict(trained, strict=False, assign=True)
        if grid != model.trained_grid:
            net.set_input_size(img_size=(grid[0] * model.patch, grid[1] * model.patch))


def family_by_class(name: str, net: nn.Module) -> Family | None:
    """The family of a timm model whose name no family lists, from its class: timm's plain
    ``VisionTransformer`` with a learned ``pos_embed`` is a learned-APE ViT whatever its name (interp:
    ``dynamic_img_size``; native off the trained grid: not applicable); any other class with
    ``set_input_size`` runs interp through it (native: unknown). None for a class with neither, or a name
    pebench excludes."""
    from timm.models.vision_transformer import VisionTransformer

    ape = FAMILIES[0]
    if any(fnmatch.fnmatch(name, p) for p in (*_EXCLUDED, *ape.excluded)):
        return None
    if type(net) is VisionTransformer and isinstance(getattr(net, "pos_embed", None), nn.Parameter):
        return replace(ape, name="learned APE (by its timm class)")
    if not callable(getattr(net, "set_input_size", None)):
        return None
    kind = type(net).__name__
    return Family(name=f"set_input_size (by its timm class {kind})", patterns=(),
                  encoding=f"timm {kind}'s own position parameters (an unlisted class)", native=None,
                  interp=f"{kind}.set_input_size(img_size=...) from the trained state: timm's own resize",
                  configure=_configure_by_set_input_size, generic=True)
