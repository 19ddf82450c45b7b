"""The outside model (pebench_liere.model): pebench accepts it through `py:`, its modes mean what pebench's
do, its twin has no positions, and its weights go through a checkpoint and train."""

import torch
from pebench_liere.model import LieViT, make

from pebench.models.interface import ResolutionModel
from pebench.models.outside import build_outside


def test_pebench_takes_it_through_the_py_route(tmp_path):
    net, meta = build_outside("py:pebench_liere.model:make")
    assert isinstance(net, ResolutionModel) and meta["train_res"] == 224 and meta["num_classes"] == 10
    path = tmp_path / "lievit.pt"
    torch.save(net.state_dict(), path)
    again, meta = build_outside(f"py:pebench_liere.model:make@{path}")
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        assert torch.equal(again(x, "native"), net(x, "native"))
    assert meta["weights"] == "checkpoint" and len(meta["checkpoint_sha256"]) == 64


def test_interp_lands_on_the_trained_positions_and_native_does_not():
    net = make()
    trained = net.rotations((14, 14), "native", torch.device("cpu"))[0].view(14, 14, 16, 16)
    interp = net.rotations((28, 28), "interp", torch.device("cpu"))[0].view(28, 28, 16, 16)
    native = net.rotations((28, 28), "native", torch.device("cpu"))[0].view(28, 28, 16, 16)
    assert torch.allclose(interp[::2, ::2], trained, atol=1e-5)
    assert not torch.allclose(native[::2, ::2], trained, atol=1e-3)
    x = torch.randn(2, 3, 448, 448)
    with torch.inference_mode():
        assert not torch.allclose(net(x, "interp"), net(x, "native"), atol=1e-4)
        assert torch.allclose(net(x, "scale=0.5"), net(x, "interp"), atol=1e-5)  # G0/G = 0.5 at 448


def test_the_twin_is_the_same_model_without_positions():
    net = make()
    twin = net.position_free_twin()
    assert twin.position_param_count() == 0 and twin.interp_is_native and net.position_param_count() == 4 * 2 * 256
    own = sum(p.numel() for p in net.parameters())
    assert sum(p.numel() for p in twin.parameters()) == own - net.position_param_count()


def test_the_generators_learn():
    net = LieViT(dim=32, depth=1, heads=2).train()
    loss = net(torch.randn(2, 3, 64, 64), "native").logsumexp(dim=1).sum()
    loss.backward()
    assert net.generators.grad.abs().sum() > 0
