"""Real checkpoints: timm models behind pebench's model interface (``model(x, mode)``).

A model spec ``timm:NAME`` builds ``timm.create_model(NAME, pretrained=False)`` and loads weights
from a file (.safetensors, or .pth/.bin read with ``torch.load(weights_only=True)``, a plain state
dict or one nested under ``model`` / ``state_dict``) or from the local Hugging Face cache, which
is only read, never filled: pebench does not download. The classifier size comes from the weights.

Each supported family says what its two resolution modes mean and which timm API implements them
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
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pebench.encodings.base import clamped_offset_index, relative_offsets
from pebench.encodings.spec import did_you_mean
from pebench.errors import PebenchError
from pebench.modes import scale_of
from pebench.resolution import as_hw

PREFIX = "timm:"


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
    configure: Callable[[TimmModel, tuple[int, int], str], None] | None = None
    excluded: tuple[str, ...] = ()  # globs of this family's names pebench cannot run


def _configure_rope(model: TimmModel, grid: tuple[int, int], mode: str) -> None:
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


def _configure_dinov3(model: TimmModel, grid: tuple[int, int], mode: str) -> None:
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


def _configure_relpos_mlp(model: TimmModel, grid: tuple[int, int], mode: str) -> None:
    """vit_relpos: native = timm's set_input_size (the MLP at the new integer offsets); interp = the
    same MLP at offsets scaled by G0/G, in timm's 'cr' log space sign(x) log(1 + |x|)."""
    net = model.net
    net.set_input_size(img_size=(grid[0] * model.patch, grid[1] * model.patch))
    for module in _relpos_mlps(net):
        module.init_non_persistent_buffers()  # integer offsets again, even if the grid did not change
    if mode != "interp" or grid == model.trained_grid:
        return
    scale = torch.tensor([model.trained_grid[0] / grid[0], model.trained_grid[1] / grid[1]])
    offsets = relative_offsets(grid, torch.device("cpu"))[0].float() * scale  # row-major, (row, col)
    coords = offsets.view(2 * grid[0] - 1, 2 * grid[1] - 1, 2)
    log_coords = torch.sign(coords) * torch.log1p(coords.abs())
    for module in _relpos_mlps(net):
        module.rel_coords_log.copy_(log_coords.to(module.rel_coords_log))


def _relpos_mlps(net: nn.Module) -> list[nn.Module]:
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


def _cpb_modules(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if hasattr(m, "cpb_mlp")]


def _cpb_divisor(module: nn.Module) -> float:
    """What timm divides relative offsets by before the log transform (pretrained window - 1, else window - 1)."""
    pretrained = module.pretrained_window_size[0]
    return max((pretrained if pretrained > 0 else module.window_size[0]) - 1, 1)


def _configure_cpb(model: TimmModel, grid: tuple[int, int], mode: str) -> None:
    """Swin-v2: timm's set_input_size scales every stage's window with the grid. Native keeps the
    trained offset units (offsets beyond the trained window extrapolate the CPB MLP); interp scales
    them by (w - 1) / (w0 - 1) into the trained range - for models without a pretrained window size
    that is timm's own behaviour."""
    net = model.net
    net.set_input_size(img_size=(grid[0] * model.patch, grid[1] * model.patch))
    for module, (trained_window, trained_divisor) in zip(_cpb_modules(net), model.trained_cpb, strict=True):
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
    for module in _cpb_modules(net):
        module.cpb_mlp = _ZeroBias(module.num_heads)


def _table_modules(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(getattr(m, "relative_position_bias_table", None), nn.Parameter)]


def _configure_table(model: TimmModel, grid: tuple[int, int], mode: str) -> None:
    """BEiT: interp = timm's set_input_size (resize_rel_pos_bias_table) from the trained tables;
    native = the trained tables read through a clamped index. Each change starts from the trained
    state, so resolutions visited earlier never compound interpolation."""
    from timm.models.beit import gen_relative_position_index

    net, trained = model.net, model.trained_grid
    tables = _table_modules(net)
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


def _unknown_name_error(name: str) -> PebenchError:
    import timm

    known = timm.list_models()
    return PebenchError(f"unknown timm model '{name}'{did_you_mean(name, known)}; `pebench list models` shows the "
                        "supported timm families")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file; pickled files are read with weights_only=True (no code runs)."""
    if not path.is_file():
        raise PebenchError(f"checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors and torch.load raise many types for foreign or corrupt files
        raise PebenchError(f"{path}: not a readable checkpoint ({type(error).__name__}: {str(error)[:120]}); "
                           "pass a .safetensors, .pth or .bin file holding a state dict") from None
    for key in ("model", "state_dict", "model_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PebenchError(f"{path}: holds no state dict of tensors (nor one under 'model' or 'state_dict')")
    return state


def _hf_cache_file(net: nn.Module) -> tuple[Path | None, str]:
    """The cached pretrained weights of a timm model, if any, and where pebench looked."""
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    repo = cfg.get("hf_hub_id")
    if not repo:
        return None, "no Hugging Face id in timm's pretrained config"
    from huggingface_hub import constants, try_to_load_from_cache

    cache = os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename, cache_dir=cache)
        if isinstance(found, str):
            return Path(found), ""
    return None, f"Hugging Face cache {cache} (repo {repo})"


def _classes_in(state: dict[str, torch.Tensor]) -> int | None:
    for key in ("head.weight", "head.fc.weight", "fc.weight"):
        if key in state and state[key].ndim == 2:
            return state[key].shape[0]
    return None


def _first_mismatch(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str | None:
    for key, value in expected.items():
        if key not in state:
            return f"tensor '{key}' is missing"
        if tuple(state[key].shape) != tuple(value.shape):
            return f"tensor '{key}' has shape {tuple(state[key].shape)}, the model expects {tuple(value.shape)}"
    extra = next((k for k in state if k not in expected), None)
    return f"unexpected tensor '{extra}'" if extra else None


class TimmModel(nn.Module):
    """A timm classifier run at any resolution in pebench's native / interp modes."""

    def __init__(self, name: str, net: nn.Module, family: Family):
        super().__init__()
        self.name, self.net, self.family = name, net, family
        self.patch = net.feature_info[-1]["reduction"]  # the total stride (Twins: 32)
        if hasattr(getattr(net, "embeds", None), "pos_embed_grid_size"):  # NaFlexViT: the stored grid's size
            self.img_size = net.embeds.pos_embed_grid_size[0] * self.patch
        else:
            self.img_size = (getattr(net, "patch_embed", None) or net.patch_embeds[0]).img_size[0]
        self.trained_grid = (self.img_size // self.patch, self.img_size // self.patch)
        self.size = name
        self.spec = f"{PREFIX}{name}"
        self.trained_tables: list[torch.Tensor] = []
        self.trained_cpb: list[tuple[int, float]] = []
        self.trained_pos_embed: torch.Tensor | None = None
        self._configured: tuple | None = None

    def snapshot_trained(self) -> None:
        """Keep the trained relative tables and APE grid: every resolution change starts from them."""
        self.trained_tables = [m.relative_position_bias_table.detach().clone() for m in _table_modules(self.net)]
        self.trained_cpb = [(m.window_size[0], _cpb_divisor(m)) for m in _cpb_modules(self.net)]
        pos_embed = self._pos_embed()
        self.trained_pos_embed = None if pos_embed is None else pos_embed.detach().clone()

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    @property
    def interp_is_native(self) -> bool:
        return self.family.native == self.family.interp

    def _pos_embed(self) -> torch.Tensor | None:
        return getattr(self.net, "pos_embed", None)

    def _naflex_tables(self, grid: tuple[int, int] = (0, 0)) -> list[tuple[torch.Tensor, int]]:
        """NaFlexViT's learned grid (1, H, W, C) or factorized tables (1, H, C), (1, W, C), each with the
        rows it uses on ``grid``."""
        embeds, (gh, gw) = getattr(self.net, "embeds", None), grid
        tables = ((getattr(embeds, "pos_embed", None), gh * gw), (getattr(embeds, "pos_embed_y", None), gh),
                  (getattr(embeds, "pos_embed_x", None), gw))
        return [(table, rows) for table, rows in tables if isinstance(table, torch.Tensor)]

    def _module_param_count(self) -> int:
        """Position parameters that do not change with resolution: RoPE frequencies, relative MLPs, PEGs."""
        modules = [getattr(self.net, "rope", None), *_relpos_mlps(self.net), getattr(self.net, "pos_block", None),
                   *(m.cpb_mlp for m in _cpb_modules(self.net))]
        return sum(p.numel() for m in modules if m is not None for p in m.parameters())

    def position_param_count(self) -> int:
        ape = 0 if self.trained_pos_embed is None else self.trained_pos_embed.numel()
        ape += sum(table.numel() for table, _ in self._naflex_tables())
        return ape + self._module_param_count() + sum(t.numel() for t in self.trained_tables)

    def position_values_at(self, res, mode: str) -> int:
        """Stored position values in use at ``res``: a resampled APE grid or resized table grows with it."""
        gh, gw = (side // self.patch for side in as_hw(res))
        count = self._module_param_count()
        if self.trained_pos_embed is not None:
            prefix = self.trained_pos_embed.shape[1] - self.trained_grid[0] * self.trained_grid[1]
            count += (prefix + gh * gw) * self.trained_pos_embed.shape[2]
        count += sum(rows * table.shape[-1] for table, rows in self._naflex_tables((gh, gw)))
        for table in self.trained_tables:
            rows = (2 * gh - 1) * (2 * gw - 1) + 3 if mode == "interp" else table.shape[0]
            count += rows * table.shape[1]
        return count

    def position_free_twin(self) -> nn.Module:
        """The same timm architecture without position information: the cost reference."""
        import timm

        built = dict(getattr(self.net, "_model_args", {}))  # what timm was asked for, e.g. a smaller depth
        if "img_size" in built:  # timm records set_input_size's resizes too: the twin starts trained
            built["img_size"] = self.img_size
        kwargs = built | dict(self.family.create_kwargs) | dict(self.family.position_free_kwargs)
        kwargs["num_classes"] = self.num_classes
        net = timm.create_model(self.name, pretrained=False, **kwargs)
        if self.family.strip_position is not None:
            self.family.strip_position(net)
        twin = TimmModel(self.name, net.eval(), self.family)
        twin.snapshot_trained()
        return twin

    def applicability(self, res, mode: str) -> str | None:
        height, width = as_hw(res)
        if height % self.patch or width % self.patch:
            return f"{height}x{width} px is not a multiple of the patch size {self.patch}"
        if scale_of(mode) is not None:
            return "timm models run in native and interp mode only: pebench does not rescale positions inside timm"
        if mode == "native" and (height, width) != (self.img_size, self.img_size) and (
                self.family.native is None or self._pos_embed() is not None):
            grid = self.img_size // self.patch
            return f"the learned APE (pos_embed) exists only on its trained {grid}x{grid} grid; use interp mode"
        return None

    def resize_api(self, res, mode: str) -> str | None:
        """The timm API that adapts position parameters for this cell (recorded with results)."""
        if as_hw(res) == (self.img_size, self.img_size):
            return None
        return self.family.native if mode == "native" else self.family.interp

    def forward(self, x: torch.Tensor, mode: str = "interp") -> torch.Tensor:
        reason = self.applicability(tuple(x.shape[-2:]), mode)
        if reason:
            raise ValueError(reason)
        grid = (x.shape[-2] // self.patch, x.shape[-1] // self.patch)
        if self.family.configure is not None and self._configured != (grid, mode):
            self.family.configure(self, grid, mode)
            self._configured = (grid, mode)
        return self.net(x)


def build_timm_model(spec: str, checkpoint: Path | None = None, random_if_missing: bool = False
                     ) -> tuple[TimmModel, dict]:
    """(model, sidecar-like metadata) for ``timm:NAME`` with weights from ``checkpoint`` or the HF cache;
    with ``random_if_missing`` (profiling: cost does not depend on the weights), random weights and
    ``meta["weights"] == "random"`` when neither has any."""
    import timm
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    name = spec.removeprefix(PREFIX)
    if not timm.is_model(name):
        raise _unknown_name_error(name)
    family = family_of(name)
    if family is None:
        supported = ", ".join(f"{f.name} ({' '.join(f.patterns[:3])} ...)" for f in FAMILIES)
        raise PebenchError(f"timm model '{name}' is not in a family pebench can resize; supported: {supported}")
    probe = timm.create_model(name, pretrained=False, num_classes=0)
    looked = ""
    if checkpoint is None:
        checkpoint, looked = _hf_cache_file(probe)
    if checkpoint is None and random_if_missing:
        net = timm.create_model(name, pretrained=False, **dict(family.create_kwargs))
        model = TimmModel(name, net.eval(), family)
        model.snapshot_trained()
        return model, {"size": name, "encoding": family.encoding, "train_res": model.img_size, "patch": model.patch,
                       "num_classes": net.num_classes, "checkpoint_sha256": None, "family": family.name,
                       "checkpoint": None, "weights": f"random (no checkpoint: looked in {looked})"}
    if checkpoint is None:
        raise PebenchError(f"no weights for timm:{name}: looked in {looked}; pass --checkpoint FILE "
                           "(.safetensors/.pth/.bin) or fill the cache on a machine with network (pebench never "
                           "downloads; set HF_HUB_OFFLINE=1 to keep timm from trying)")
    checkpoint = Path(checkpoint)
    state = read_state_dict(checkpoint)
    num_classes = _classes_in(state) or 0
    net = timm.create_model(name, pretrained=False, num_classes=num_classes, **dict(family.create_kwargs))
    module = __import__(type(net).__module__, fromlist=["checkpoint_filter_fn"])
    filter_fn = getattr(module, "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, net)
    mismatch = _first_mismatch(state, net.state_dict())
    if mismatch:
        raise PebenchError(f"{checkpoint}: not a checkpoint of timm:{name}: {mismatch}")
    net.load_state_dict(state)
    model = TimmModel(name, net.eval(), family)
    model.snapshot_trained()
    meta = {"size": name, "encoding": family.encoding, "train_res": model.img_size, "patch": model.patch,
            "num_classes": num_classes, "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
            "family": family.name, "checkpoint": str(checkpoint), "weights": "trained",
            # inputs are normalised as the model was trained (timm's validate.py reads the same config)
            "mean": list(net.pretrained_cfg.get("mean", IMAGENET_DEFAULT_MEAN)),
            "std": list(net.pretrained_cfg.get("std", IMAGENET_DEFAULT_STD))}
    return model.eval(), meta
