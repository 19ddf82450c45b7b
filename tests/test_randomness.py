"""Training, rendering and sampling draw from independent streams (pebench.randomness)."""

import numpy as np
import pytest
import torch

from pebench.data.synthetic import SPLITS
from pebench.randomness import PURPOSES, numpy_stream, torch_seed


def scene_stream(seed: int, split: str, index: int) -> np.random.Generator:
    """The synthetic scenes' stream, as pebench.data.synthetic.sample_scenes draws it."""
    return np.random.default_rng([seed, SPLITS[split], index])


@pytest.mark.parametrize("seed, split, index", [(0, "train", 0), (0, "val", 5), (3, "val", 17)])
def test_crops_never_share_the_scenes_stream(seed, split, index):
    # where the plain keys collided: the crops of epoch = the split's id, step = the index
    epoch, step = SPLITS[split], index
    assert numpy_stream("crops", seed, epoch, step).random(4).tolist() != scene_stream(seed, split, index).random(
        4).tolist()


def test_purposes_with_the_same_key_draw_different_streams():
    draws = {purpose: numpy_stream(purpose, 0, 0).random(4).tolist() for purpose in PURPOSES}
    assert len({tuple(d) for d in draws.values()}) == len(PURPOSES)
    seeds = {purpose: torch_seed(purpose, 0, 0) for purpose in PURPOSES}
    assert len(set(seeds.values())) == len(PURPOSES) and all(0 <= s < 2**63 for s in seeds.values())


def test_the_first_epochs_shuffle_is_not_the_initialisations_stream():
    init = torch.Generator().manual_seed(torch_seed("init", 0))
    epoch = torch.Generator().manual_seed(torch_seed("epoch", 0, 0))
    assert not torch.equal(torch.randperm(100, generator=init), torch.randperm(100, generator=epoch))


def test_streams_are_the_same_for_the_same_key():
    assert numpy_stream("crops", 1, 2, 3).random(3).tolist() == numpy_stream("crops", 1, 2, 3).random(3).tolist()
    assert torch_seed("epoch", 1, 2) == torch_seed("epoch", 1, 2) != torch_seed("epoch", 1, 3)
