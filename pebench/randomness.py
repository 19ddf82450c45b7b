"""Independent random streams, one per purpose, so that no two draws of pebench can ever coincide.

A stream is numpy's ``SeedSequence`` of a key (the seed, and what the draw is for: an epoch, a step)
with the purpose as its spawn key. ``SeedSequence`` mixes the spawn key apart from the key, so two
purposes never share a stream, whatever their keys. Before this, the training crops drew from the
plain key ``[seed, epoch, step]``, which is the synthetic scenes' ``[seed, split, index]`` whenever the
epoch equals a split's id and the step an index, and the first epoch's shuffle drew from the seed the
weights were initialised with.

The synthetic scenes keep their plain key (no spawn key), so that every split rendered so far, and
every record made on one, stays the same; no other purpose uses an empty spawn key.
"""

from __future__ import annotations

import numpy as np
import torch

#: recorded in every checkpoint's sidecar (augmentation.random_streams): 2 = these streams; sidecars
#: without it were trained with the earlier plain keys (the shipped zoo v2)
STREAMS_VERSION = 2
#: purpose -> its spawn key (nonzero, distinct); the scenes' stream has none (see above)
PURPOSES = {"init": 1, "epoch": 2, "crops": 3}


def _sequence(purpose: str, key: tuple[int, ...]) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(k) for k in key], spawn_key=(PURPOSES[purpose],))


def numpy_stream(purpose: str, *key: int) -> np.random.Generator:
    """numpy's generator of ``purpose`` for ``key`` (e.g. crops, seed, epoch, step)."""
    return np.random.default_rng(_sequence(purpose, key))


def torch_seed(purpose: str, *key: int) -> int:
    """A 63-bit seed for a torch generator of ``purpose`` for ``key`` (e.g. epoch, seed, epoch)."""
    return int(_sequence(purpose, key).generate_state(1, np.uint64)[0] >> np.uint64(1))


def torch_stream(purpose: str, *key: int) -> torch.Generator:
    return torch.Generator().manual_seed(torch_seed(purpose, *key))
