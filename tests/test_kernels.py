"""Fused kernels (pebench.kernels) beyond attention: RoPE's rotation of queries and keys runs as one function
that a GPU compiles, equal to the eager complex product in every mode; "auto" keeps the CPU on the reference,
and a failing compiler switches every fused path back to it."""

import shutil

import pytest
import torch
from conftest import perturbed_model

from pebench import kernels
from pebench.encodings import rope
from pebench.encodings.base import Context
from pebench.models import attention


@pytest.fixture
def rotations(monkeypatch):
    """How many times the fused rotation ran."""
    calls = []

    def counted(*args):
        calls.append(args)
        return fused(*args)

    fused = rope.rotate_both
    monkeypatch.setattr(rope, "rotate_both", counted)
    return calls


@pytest.mark.parametrize("spec", ["rope_axial", "rope_mixed", "rope_axial+spvit"])
@pytest.mark.parametrize("mode", ["native", "interp", "scale=0.5"])
def test_the_fused_rotation_equals_the_reference(spec, mode, images, rotations):
    model = perturbed_model(spec)
    x = images(288)
    with torch.inference_mode():
        model.attention_path = "reference"
        reference = model(x, mode)
        assert not rotations
        model.attention_path = "flex"
        fused = model(x, mode)
    assert len(rotations) == len(model.blocks)  # every block rotated by the fused function
    assert reference.std() > 0.1
    torch.testing.assert_close(fused, reference, atol=2e-5, rtol=1e-4)


def test_auto_keeps_the_cpu_on_the_reference_rotation(images, rotations):
    model = perturbed_model("rope_axial")
    with torch.inference_mode():
        model(images(224, batch=1))
    assert model.attention_path == "auto" and not rotations
    assert not Context((14, 14), (14, 14), "native", 1).fused_kernels  # contexts made without it, as plugins do


@pytest.mark.parametrize("spec, module, kernel", [("spvit", attention, "flex_attention_with_terms"),
                                                  ("lookhere", attention, "flex_attention_with_terms"),
                                                  ("rope_axial+spvit", rope, "rotate_both")])
def test_a_failing_kernel_falls_back_once_says_so_and_switches_all_fusion_off(spec, module, kernel, images,
                                                                              monkeypatch):
    model = perturbed_model(spec)
    x = images(224, batch=1)
    with torch.inference_mode():
        reference = model(x, "native")

    tries = []

    def broken(*args):
        tries.append(args)
        raise RuntimeError("triton: no such device")

    monkeypatch.setattr(module, kernel, broken)
    monkeypatch.setattr(kernels, "failure", None)
    model.attention_path = "flex"
    with pytest.warns(RuntimeWarning, match="a fused kernel failed on this machine .RuntimeError: triton: no such"):
        with torch.inference_mode():
            torch.testing.assert_close(model(x, "native"), reference)
    assert kernels.failure == "RuntimeError: triton: no such device"
    assert not kernels.wanted("flex", x.device)  # nothing is tried again in this process
    with torch.inference_mode():
        torch.testing.assert_close(model(x, "native"), reference)
    assert len(tries) == 1 and not attention.flex_allowed(model.context((14, 14), "native", kernels.wanted(
        "flex", x.device)), model.pos_encoding, 0)


def test_out_of_memory_in_a_fused_kernel_reaches_the_caller(monkeypatch):
    monkeypatch.setattr(kernels, "failure", None)

    def out_of_memory():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(torch.OutOfMemoryError):
        kernels.fused_or_reference(out_of_memory, lambda: "reference")
    assert kernels.failure is None


def _query_like_the_model(generator, dtype):
    """(B, heads, T, head_dim) as the model's qkv projection leaves it: a strided view, not contiguous."""
    qkv = torch.randn(2, 50, 3, 3, 16, generator=generator).to(dtype)
    return qkv.permute(2, 0, 3, 1, 4).unbind(0)[:2]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_rotation_in_real_arithmetic_equals_the_complex_product(dtype):
    g = torch.Generator().manual_seed(0)
    q, k = _query_like_the_model(g, dtype)
    phasors = torch.polar(torch.ones(3, 50, 8), torch.randn(3, 50, 8, generator=g) * 3)
    got_q, got_k = rope.rotate_both(q, k, torch.view_as_real(phasors))
    assert got_q.dtype == dtype
    torch.testing.assert_close(got_q, rope.rotate_pairs(q, phasors), atol=1e-6, rtol=0)
    torch.testing.assert_close(got_k, rope.rotate_pairs(k, phasors), atol=1e-6, rtol=0)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile's CPU backend needs a C++ compiler")
def test_the_rotation_compiles_as_it_will_on_a_gpu():
    """torch.compile traces the fused rotation (bf16 strided queries, float32 phasors read as real pairs) into a
    kernel equal to the reference, here with the CPU's inductor backend, as a GPU compiles it with Triton's."""
    g = torch.Generator().manual_seed(1)
    q, k = _query_like_the_model(g, torch.bfloat16)
    phasors = torch.polar(torch.ones(1, 50, 8), torch.randn(1, 50, 8, generator=g))
    got_q, got_k = kernels.compiled(rope.rotate_both)(q, k, torch.view_as_real(phasors))
    torch.testing.assert_close(got_q, rope.rotate_pairs(q, phasors), atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(got_k, rope.rotate_pairs(k, phasors), atol=1e-2, rtol=1e-2)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile's CPU backend needs a C++ compiler")
def test_a_compiled_function_keeps_compiling_past_torchs_recompile_limit():
    """Past torch's limit of specialisations (8) dynamo runs a function eagerly, FlexAttention unfused; a suite
    meets more shapes than that (resolutions x batch sizes x encodings), so pebench raises the limit when it
    compiles. Here the limit starts at 2 and a third shape still compiles."""
    from torch._dynamo.utils import counters

    def affine(x):
        return x * 2 + 1

    with torch._dynamo.config.patch(recompile_limit=2):  # restored afterwards (monkeypatch would delete it)
        function = kernels.compiled(affine)
        before = counters["stats"]["unique_graphs"]
        for n in (3, 4, 5):
            torch.testing.assert_close(function(torch.ones(n)), torch.full((n,), 3.0))
    assert counters["stats"]["unique_graphs"] - before == 3
