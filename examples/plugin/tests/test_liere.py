"""The LieRE plugin on its own: its rotations are rotations, the modes mean what pebench says, and its
outputs match golden values recorded when it was written (as LieRE's repository keeps per encoding)."""

import json
from pathlib import Path

import pytest
import torch
from pebench_liere import LieRE

from pebench.encodings.base import Arch, Context

GOLDEN = Path(__file__).with_name("golden.json")
ARCH = Arch(dim=24, depth=2, num_heads=3, trained_grid=(4, 4), num_prefix=1)


def liere(block: int = 0, seed: int = 0) -> LieRE:
    torch.manual_seed(seed)
    return LieRE(ARCH, block=block)


@pytest.mark.parametrize("block", [0, 2, 4])
def test_every_position_gets_a_rotation_and_the_origin_none(block):
    rotations = liere(block).rotations(1, Context((6, 5), (4, 4), "native", 1), torch.device("cpu"))
    eye = torch.eye(ARCH.head_dim)
    assert rotations.shape == (30, 8, 8)
    assert torch.allclose(rotations @ rotations.transpose(1, 2), eye.expand(30, 8, 8), atol=1e-5)
    assert torch.allclose(rotations[0], eye, atol=1e-6)  # patch (0, 0) is position 0
    if block:
        off_block = rotations.clone()
        for i in range(0, 8, block):
            off_block[:, i : i + block, i : i + block] = 0
        assert off_block.abs().max() == 0


def test_interp_spans_the_trained_range_and_native_goes_beyond_it():
    component = liere()
    trained = component.rotations(0, Context((4, 4), (4, 4), "native", 1), torch.device("cpu"))
    interp = component.rotations(0, Context((8, 8), (4, 4), "interp", 1), torch.device("cpu"))
    native = component.rotations(0, Context((8, 8), (4, 4), "native", 1), torch.device("cpu"))
    # interp's patch (2r, 2c) of the 8x8 grid sits where the trained patch (r, c) was; native's does not
    assert torch.allclose(interp.view(8, 8, 8, 8)[::2, ::2], trained.view(4, 4, 8, 8), atol=1e-5)
    assert not torch.allclose(native.view(8, 8, 8, 8)[::2, ::2], trained.view(4, 4, 8, 8), atol=1e-3)


def test_the_class_token_is_not_rotated_and_norms_are_kept():
    component = liere()
    ctx = Context((4, 4), (4, 4), "native", 1)
    q, k = torch.randn(2, 3, 17, 8), torch.randn(2, 3, 17, 8)
    q2, k2 = component.rotate(0, q, k, ctx)
    assert torch.equal(q2[:, :, 0], q[:, :, 0]) and torch.equal(k2[:, :, 0], k[:, :, 0])
    assert torch.allclose(q2.norm(dim=-1), q.norm(dim=-1), atol=1e-5)


def golden_outputs() -> dict[str, list[float]]:
    """Fixed queries rotated at a 6x5 grid (trained 4x4) in each mode, by each block size: the values a change
    to the rotation, the generators' initialisation or the position normalisation would move."""
    q = torch.randn(1, 1, 31, 8, generator=torch.Generator().manual_seed(1))
    out = {}
    for block in (0, 2):
        component = liere(block)
        for mode in ("native", "interp", "scale=0.5"):
            rotated, _ = component.rotate(1, q, q, Context((6, 5), (4, 4), mode, 1))
            out[f"block {block} {mode}"] = [round(v, 4) for v in rotated[0, 0, [1, 7, 30]].flatten().tolist()]
    return out


def test_outputs_match_the_golden_values():
    golden = json.loads(GOLDEN.read_text())
    now = golden_outputs()
    assert set(golden) == set(now)
    for key, values in golden.items():
        assert now[key] == pytest.approx(values, abs=1e-4), key
