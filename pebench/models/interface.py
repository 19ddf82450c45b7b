"""The one model interface the runner, the measurements and the reports rely on, and the loaded model
that carries a model with where it came from.

pebench's own :class:`~pebench.models.vit.VisionTransformer` and the timm adapter
(:class:`~pebench.models.timm_adapter.TimmModel`) both implement :class:`ResolutionModel`
(tests/test_models.py checks it); anything else that does can be benchmarked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from pebench.modes import FIXED, position_scale
from pebench.resolution import Label, as_hw


@runtime_checkable
class ResolutionModel(Protocol):
    """A classifier trained at one resolution that runs at any other in pebench's modes.

    ``mode`` is always native, interp or scale=S (:mod:`pebench.modes`); ``res`` a resolution label
    (384 or "384x512")."""

    #: pixels per patch side, and the square resolution it was trained at
    patch: int
    img_size: int
    #: the patch grid at the training resolution, (rows, cols)
    trained_grid: tuple[int, int]
    #: the backbone size (pebench: micro ... base; timm: the model name)
    size: str
    #: the encoding it was built with (str() gives its spec)
    spec: object

    @property
    def num_classes(self) -> int: ...

    @property
    def interp_is_native(self) -> bool:
        """True when interp runs the native computation (nothing to interpolate)."""

    def grid_at(self, res: Label) -> tuple[int, int]:
        """The patch grid of resolution ``res``."""

    def applicability(self, res: Label, mode: str) -> str | None:
        """Why ``mode`` cannot run at ``res`` (shown in the record), or None when it can."""

    def resize_api(self, res: Label, mode: str) -> str | None:
        """The outside API that adapts position parameters for this cell (timm's), or None."""

    def position_param_count(self) -> int:
        """Position parameters as stored."""

    def position_values_at(self, res: Label, mode: str) -> int:
        """Position values in use at ``res`` (a resampled grid or table grows with it)."""

    def position_free_twin(self) -> ResolutionModel | None:
        """The same architecture without position information: the cost reference of `pebench profile`; None
        when there is none to build (the profile then has no ratio to ``none``)."""

    def __call__(self, images: torch.Tensor, mode: str) -> torch.Tensor:
        """Logits (B, classes) of images (B, 3, H, W) at their own resolution, in ``mode``."""


@dataclass(frozen=True)
class LoadedModel:
    """A model as :mod:`pebench.models.resolve` gives it: the network and what the records say about it.

    ``meta``: at least size, encoding, train_res, patch, num_classes and checkpoint_sha256 (None for
    random weights), plus weights ("trained", "random", "random (no checkpoint: ...)"), the checkpoint
    sidecar's fields for pebench's own, and mean/std for models whose inputs are not normalised with
    ImageNet's (timm: its pretrained config)."""

    name: str
    net: ResolutionModel
    meta: dict
    source: str  # "zoo" | "file" | "timm" | "built"
    path: object

    def same_as_native(self, res: Label, mode: str) -> bool:
        """Whether a cell in ``mode`` runs the native computation: interp of an encoding with nothing to
        interpolate, or either fixed mode at the training resolution."""
        return mode in FIXED and bool(self.net.interp_is_native
                                      or as_hw(res) == (self.meta["train_res"], self.meta["train_res"]))

    def position_scale(self, res: Label, mode: str) -> list[float]:
        """[rows, cols] factor on positions that ``mode`` stands for at ``res`` (the records' position_scale)."""
        return list(position_scale(mode, self.net.trained_grid, self.net.grid_at(res)))

    def to(self, device: torch.device) -> LoadedModel:
        """The same model in eval mode on ``device``."""
        self.net.eval().to(device)
        return self
