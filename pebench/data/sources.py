"""Dataset specs: ``kind[:options]`` -> a dataset. A new kind of data is one module with a class that
reads batches of positions (like :class:`~pebench.data.synthetic.SyntheticData`) plus one line here."""

from __future__ import annotations

from collections.abc import Callable

from pebench.data.imagefolder import ImageFolderData
from pebench.data.synthetic import SyntheticData
from pebench.errors import PebenchError
from pebench.settings import DEFAULT_CROP_PCT, CropPct

#: dataset kind -> the constructor taking (the text after the colon, crop_pct)
SOURCES: dict[str, Callable] = {
    "synthetic": SyntheticData.from_options,
    "imagefolder": ImageFolderData.open,
}
USAGE = "'synthetic[:seed=0,train=N,val=N]' or 'imagefolder:PATH'"


def parse_data(spec: str, crop_pct: CropPct = DEFAULT_CROP_PCT):
    """A dataset from its spec; ``crop_pct`` (one value or per resolution) applies to image folders."""
    kind, _, options = spec.partition(":")
    if kind not in SOURCES:
        raise PebenchError(f"unknown dataset '{spec}'; use {USAGE}")
    return SOURCES[kind](options, crop_pct)
