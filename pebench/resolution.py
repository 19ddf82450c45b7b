"""Resolutions: square (``384``) or height x width (``384x512``), torch-free (the CLI parses them).

A resolution travels through suites, cells and records as its *label*: the int ``384`` for a square
one (so records of square runs read as before) and the string ``"384x512"`` (height x width)
otherwise. :func:`as_hw` turns any form into ``(height, width)``.
"""

from __future__ import annotations

import re

from pebench.errors import PebenchError

Label = int | str
_PATTERN = re.compile(r"\s*(\d+)\s*(?:[x×]\s*(\d+))?\s*")


def parse_res(raw: object, what: str = "resolution") -> Label:
    """The label of ``384``, ``"384"``, ``"384x512"`` or ``[384, 512]``; a one-line error otherwise."""
    if isinstance(raw, (list, tuple)) and len(raw) == 2:
        raw = f"{raw[0]}x{raw[1]}"
    if isinstance(raw, bool):
        raw = None
    match = _PATTERN.fullmatch(str(raw)) if raw is not None else None
    if not match or int(match.group(1)) <= 0 or (match.group(2) is not None and int(match.group(2)) <= 0):
        raise PebenchError(f"{what} '{raw}' is not a size in px; write e.g. 384 (square) or 384x512 "
                           "(height x width)")
    height = int(match.group(1))
    width = int(match.group(2)) if match.group(2) is not None else height
    return label((height, width))


def label(hw: tuple[int, int]) -> Label:
    height, width = hw
    return height if height == width else f"{height}x{width}"


def as_hw(res: Label | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of a label, an int or a pair."""
    if isinstance(res, tuple):
        return res
    if isinstance(res, int):
        return (res, res)
    height, _, width = str(res).partition("x")
    return (int(height), int(width or height))


def sort_key(res: Label) -> tuple[int, int]:
    """Order resolutions by pixel count, then height."""
    height, width = as_hw(res)
    return (height * width, height)


def side(res: Label) -> float:
    """The side of the square with the same pixel count: where a resolution sits on a plot's x axis."""
    height, width = as_hw(res)
    return (height * width) ** 0.5
