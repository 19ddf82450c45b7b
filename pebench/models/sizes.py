"""Backbone sizes and the patch-tiling rule: plain data, importable without torch (the CLI reads it)."""

from __future__ import annotations

from dataclasses import dataclass

from pebench.errors import PebenchError


@dataclass(frozen=True)
class Size:
    dim: int
    depth: int
    num_heads: int


#: the patch size of every backbone pebench builds unless told otherwise (the zoo's, the profile's rows)
DEFAULT_PATCH = 16

SIZES: dict[str, Size] = {
    "micro": Size(96, 6, 3),
    "tiny": Size(192, 12, 3),  # DeiT-Ti
    "small": Size(384, 12, 6),  # DeiT-S
    "base": Size(768, 12, 12),  # ViT-B
}


def check_resolution(height: int, width: int, patch: int, what: str | None = None) -> None:
    """One-line error when a resolution does not tile into patches; ``what`` names it for the user."""
    for side in (height, width):
        if side % patch:
            raise PebenchError(
                f"{what or f'resolution {height}x{width}'} is not a multiple of the patch size {patch}; "
                f"use e.g. {side // patch * patch} or {(side // patch + 1) * patch}"
            )
