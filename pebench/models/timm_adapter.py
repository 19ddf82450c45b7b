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
- RoPE (EVA-02, RoPE-ViT's ``vit_*_rope*`` ports; Heo et al., ECCV 2024): native = rotation angles
  at the new integer positions; interp = positions scaled by G0/G (axial: timm's
  ``ref_feat_shape``; mixed: timm has no such option, pebench scales the grid it passes to
  ``get_mixed_freqs``). A model that also has a learned APE is not applicable natively off-grid.
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

from pebench.encodings.spec import did_you_mean
from pebench.errors import PebenchError

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
    configure: Callable[[nn.Module, tuple[int, int], tuple[int, int], str], None] | None = None


def _configure_rope(net: nn.Module, grid: tuple[int, int], trained_grid: tuple[int, int], mode: str) -> None:
    """Point timm's RoPE module at native (integer) or interp (scaled by G0/G) positions for ``grid``."""
    from timm.layers.pos_embed_sincos import RotaryEmbeddingMixed, get_mixed_freqs, get_mixed_grid

    rope = net.rope
    interp = mode == "interp" and grid != trained_grid
    if not isinstance(rope, RotaryEmbeddingMixed):
        rope.ref_feat_shape = list(trained_grid) if interp else None
        return
    if not interp:
        rope.__dict__.pop("get_embed", None)  # back to timm's own method
        return
    scale = trained_grid[0] / grid[0]  # square images: one factor for both axes

    def scaled_embed(shape=None, dtype=None):
        t_x, t_y = get_mixed_grid(shape, grid_indexing=rope.grid_indexing, device=rope.freqs.device)
        return get_mixed_freqs(rope.freqs, t_x * scale, t_y * scale, dtype=dtype)

    rope.get_embed = scaled_embed  # an instance attribute: this model only, undone by native mode


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
    ),
    Family(
        name="RoPE",
        patterns=("eva02_*", "vit_*_rope_*"),
        encoding="timm RoPE (axial or mixed, some with learned APE)",
        native="rotation angles at the new integer positions",
        interp="positions scaled by G0/G (axial: ref_feat_shape; mixed: pebench scales get_mixed_grid)",
        create_kwargs=(("dynamic_img_size", True),),
        position_free_kwargs=(("use_rot_pos_emb", False), ("use_abs_pos_emb", False)),
        configure=_configure_rope,
    ),
)
_EXCLUDED = ("*relpos*", "*clip*", "*reg*_gap*")


def family_of(name: str) -> Family | None:
    if any(fnmatch.fnmatch(name, pattern) for pattern in _EXCLUDED):
        return None
    # the most specific family first: vit_base_patch16_rope_224 is RoPE, not a plain ViT
    for family in reversed(FAMILIES):
        if any(fnmatch.fnmatch(name, p) for p in family.patterns):
            return family
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
        self.patch = net.patch_embed.patch_size[0]
        self.img_size = net.patch_embed.img_size[0]
        self.size = name
        self.spec = f"{PREFIX}{name}"

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    @property
    def interp_is_native(self) -> bool:
        return self.family.native == self.family.interp

    def _pos_embed(self) -> torch.Tensor | None:
        return getattr(self.net, "pos_embed", None)

    def _rope_param_count(self) -> int:
        rope = getattr(self.net, "rope", None)
        return 0 if rope is None else sum(p.numel() for p in rope.parameters())

    def position_param_count(self) -> int:
        pos_embed = self._pos_embed()
        return (0 if pos_embed is None else pos_embed.numel()) + self._rope_param_count()

    def position_values_at(self, res: int, mode: str) -> int:
        """Stored position parameters in use at ``res``; a resampled APE grid grows with it."""
        pos_embed = self._pos_embed()
        if pos_embed is None:
            return self._rope_param_count()
        prefix = pos_embed.shape[1] - (self.img_size // self.patch) ** 2
        return (prefix + (res // self.patch) ** 2) * pos_embed.shape[2] + self._rope_param_count()

    def position_free_twin(self) -> nn.Module:
        """The same timm architecture without position information: the cost reference."""
        import timm

        kwargs = dict(self.family.create_kwargs) | dict(self.family.position_free_kwargs)
        net = timm.create_model(self.name, pretrained=False, num_classes=self.num_classes, **kwargs)
        return TimmModel(self.name, net.eval(), self.family)

    def applicability(self, res: int, mode: str) -> str | None:
        if res % self.patch:
            return f"{res} px is not a multiple of the patch size {self.patch}"
        if mode == "native" and res != self.img_size and (self.family.native is None or self._pos_embed() is not None):
            grid = self.img_size // self.patch
            return f"the learned APE (pos_embed) exists only on its trained {grid}x{grid} grid; use interp mode"
        return None

    def resize_api(self, res: int, mode: str) -> str | None:
        """The timm API that adapts position parameters for this cell (recorded with results)."""
        if res == self.img_size:
            return None
        return self.family.native if mode == "native" else self.family.interp

    def forward(self, x: torch.Tensor, mode: str = "interp") -> torch.Tensor:
        reason = self.applicability(x.shape[-1], mode)
        if reason:
            raise ValueError(reason)
        if self.family.configure is not None:
            trained = self.img_size // self.patch
            grid = (x.shape[-2] // self.patch, x.shape[-1] // self.patch)
            self.family.configure(self.net, grid, (trained, trained), mode)
        return self.net(x)


def build_timm_model(spec: str, checkpoint: Path | None = None) -> tuple[TimmModel, dict]:
    """(model, sidecar-like metadata) for ``timm:NAME`` with weights from ``checkpoint`` or the HF cache."""
    import timm

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
    meta = {"size": name, "encoding": family.encoding, "train_res": model.img_size, "patch": model.patch,
            "num_classes": num_classes, "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
            "family": family.name, "checkpoint": str(checkpoint)}
    return model.eval(), meta
