"""Datasets, read in batches of positions and streamed: nothing ever holds a whole split.

Enters: a dataset spec, ``synthetic[:seed=0,train=N,val=N]`` (rendered at any resolution, no download) or
``imagefolder:PATH`` (an ImageNet-style folder, one subfolder per class, read with timm's eval
transform); a resolution; positions.
Leaves: batches of uint8 images and labels on the device (:class:`~pebench.data.stream.SplitStream`:
DataLoader workers decode or render, torchrun ranks take disjoint shares), optionally through a
decoded split kept on disk (:mod:`pebench.data.cache`).

Modules: :mod:`.items` (a batch of items, normalisation), :mod:`.synthetic` and :mod:`.imagefolder`
(the sources), :mod:`.sources` (spec -> dataset), :mod:`.stream`, :mod:`.cache`.
"""

from pebench.data.cache import cache_dir
from pebench.data.items import IMAGENET_MEAN, IMAGENET_STD, Items, normalize
from pebench.data.sources import parse_data
from pebench.data.stream import read_split
from pebench.data.synthetic import SyntheticData

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Items", "SyntheticData", "cache_dir", "normalize", "parse_data",
           "read_split"]
