"""Dataset specs: ``kind[:options]`` -> a dataset. A new kind of data is one module with a class that
reads batches of positions (like :class:`~pebench.data.synthetic.SyntheticData`) plus one line here."""

from __future__ import annotations

from collections.abc import Callable

from pebench.data.gpu_decode import GpuJpegFolder
from pebench.data.imagefolder import ImageFolderData
from pebench.data.synthetic import SyntheticData
from pebench.errors import PebenchError
from pebench.settings import DEFAULT_CROP_PCT, CropPct, check_decode

#: dataset kind -> the constructor taking (the text after the colon, crop_pct)
SOURCES: dict[str, Callable] = {
    "synthetic": SyntheticData.from_options,
    "imagefolder": ImageFolderData.open,
}
USAGE = "'synthetic[:seed=0,train=N,val=N]' or 'imagefolder:PATH'"


def parse_data(spec: str, crop_pct: CropPct = DEFAULT_CROP_PCT, decode: str = "cpu"):
    """A dataset from its spec; ``crop_pct`` (one value or per resolution) applies to image folders, and
    ``decode`` "gpu" decodes a folder's JPEGs on the device (:mod:`pebench.data.gpu_decode`)."""
    kind, _, options = spec.partition(":")
    if kind not in SOURCES:
        raise PebenchError(f"unknown dataset '{spec}'; use {USAGE}")
    check_decode(spec, decode)
    data = SOURCES[kind](options, crop_pct)
    return GpuJpegFolder(data) if decode == "gpu" else data
