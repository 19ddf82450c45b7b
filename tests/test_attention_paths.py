"""The attention paths of pebench.models.attention agree: FlexAttention with a score_mod equals the reference
(explicit attention, or SDPA with the dense bias) for every multiplying and every bucket-gathering encoding and
mode (float32, CPU, uncompiled), terms that read the probabilities stay explicit, and "auto" keeps the CPU on the
reference."""

import shutil

import pytest
import torch
from conftest import perturbed_model

from pebench import kernels
from pebench.errors import PebenchError
from pebench.models import attention


@pytest.mark.parametrize("spec", ["spvit", "spvit+rope_axial", "spvit:blocks=0+alibi", "rpe",
                                  "rpe:on=qk,method=cross", "rpe:mode=bias+spvit", "rpe:on=qk+spvit", "alibi",
                                  "lookhere", "lookhere:fov=180+rope_axial", "lookhere:fov=45+spvit"])
@pytest.mark.parametrize("mode", ["native", "interp", "scale=0.5"])
def test_flex_equals_the_reference_for_every_fused_encoding(spec, mode, images):
    model = perturbed_model(spec)
    x = images(288)
    with torch.inference_mode():
        model.attention_path = "reference"
        reference = model(x, mode)
        model.attention_path = "flex"
        flexed = model(x, mode)
    assert reference.std() > 0.1  # logits that depend on the terms enough for the tolerance to mean something
    assert kernels.failure is None  # FlexAttention itself ran, not the fallback
    torch.testing.assert_close(flexed, reference, atol=2e-5, rtol=1e-4)


def test_per_image_terms_and_a_bias_alone_are_read_per_batch_and_head():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, 17, 8, generator=g) for _ in range(3))
    multiplier = torch.rand(3, 2, 17, 17, generator=g) + 0.5  # one per image
    bias = torch.randn(2, 17, 17, generator=g)  # (heads, T, T): broadcast over the batch
    scores = (q * 8**-0.5) @ k.transpose(-1, -2)
    expected = (scores * multiplier + bias).softmax(-1) @ v
    got = attention.flex_attention_with_terms(q, k, v, 8**-0.5, bias, multiplier)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(attention.flex_attention_with_terms(q, k, v, 8**-0.5, bias, None),
                               (scores + bias).softmax(-1) @ v, atol=1e-5, rtol=1e-4)


def test_value_terms_and_probes_stay_explicit_and_auto_keeps_the_cpu_on_the_reference(images, monkeypatch):
    def refuse(*args):
        raise AssertionError("FlexAttention was taken")

    monkeypatch.setattr(attention, "flex_attention_with_terms", refuse)
    x = images(224, batch=1)
    prior, values = perturbed_model("spvit"), perturbed_model("rpe:method=cross,on=qkv")
    assert any(values.pos_encoding.reads_probabilities(b) for b in range(len(values.blocks)))
    assert not any(prior.pos_encoding.reads_probabilities(b) for b in range(len(prior.blocks)))
    values.attention_path = "flex"
    with torch.inference_mode():
        prior(x, "native")  # auto on a CPU: the reference
        values(x, "native")  # iRPE on values reads the probabilities: explicit whatever the path
    with pytest.raises(PebenchError, match="unknown attention path 'fused'"):
        perturbed_model("spvit").attention_path = "fused"


def test_gathered_biases_are_read_through_their_buckets_never_made_dense(images, monkeypatch):
    """iRPE's contextual terms reach FlexAttention as per-token tables and a bucket index; their dense form,
    (B, heads, T, T), is only built on the reference path."""
    from pebench.encodings.base import Gathered

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 10, 8, generator=g) for _ in range(3))
    index = torch.randint(0, 5, (2, 10, 10), generator=g)
    terms = [Gathered(torch.randn(2, 3, 10, 5, generator=g), index),
             Gathered(torch.randn(1, 1, 10, 5, generator=g), index[:1], transposed=True)]
    dense = terms[0].dense() + terms[1].dense()
    assert dense.shape == (2, 3, 10, 10)
    torch.testing.assert_close(attention.flex_attention_with_terms(q, k, v, 8**-0.5, None, None, terms),
                               torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense),
                               atol=1e-5, rtol=1e-4)

    model = perturbed_model("rpe")
    model.attention_path = "flex"
    monkeypatch.setattr(Gathered, "dense", lambda self: pytest.fail("a gathered bias was made dense"))
    with torch.inference_mode():
        model(images(224, batch=1), "native")
    (index,) = {entry[1].dtype for entry in model.pos_encoding["rpe"]._inference_cache.values()}
    assert index == torch.uint8  # what the fused kernel reads per pair: 50 buckets in one byte, not eight


def test_offset_formulas_are_computed_in_the_kernel_and_masks_skip_whole_tiles(images, monkeypatch):
    """ALiBi's and LookHere's biases reach FlexAttention as formulas of the patch offset, never as a tensor;
    LookHere's visibility equals its reference masks for every head and offset and, as a block mask, skips the
    tiles its wedges leave out whole."""
    from pebench.encodings.alibi import ALiBi2D
    from pebench.encodings.base import grid_offsets
    from pebench.encodings.lookhere import LookHere, visible

    for spec, component in (("alibi", ALiBi2D), ("lookhere", LookHere)):
        model = perturbed_model(spec)
        model.attention_path = "flex"
        with monkeypatch.context() as patch:
            patch.setattr(component, "attention_bias", lambda *a: pytest.fail("a formula bias was made dense"))
            with torch.inference_mode():
                model(images(224, batch=1), "interp")

    lookhere = perturbed_model("lookhere:fov=45,global_slope=2").pos_encoding["lookhere"]
    offsets = grid_offsets((9, 7), "cpu")
    vectors = torch.stack([-offsets[:, 1], offsets[:, 0]], dim=1)
    for head, (direction, _) in enumerate(lookhere.plan):
        expected = visible(vectors, direction, lookhere.fov)
        assert torch.equal(lookhere.sees(torch.tensor(head), offsets[:, 0], offsets[:, 1]), expected)
    upwards = perturbed_model("lookhere").pos_encoding["lookhere"]  # 3 heads: up, right, down
    mask = attention._block_mask((upwards.sees,), (32, 32), 1, 3, 1025, torch.device("cpu"))
    assert 0.2 < mask.sparsity() / 100 < 0.6  # tiles skipped: up and down see half the rows, right all of them


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile's CPU backend needs a C++ compiler")
def test_the_score_mod_compiles_as_it_will_on_a_gpu():
    """torch.compile traces pebench's score_mod (a multiplier, a bias, gathered tables read through a bucket
    index, int64 and uint8, transposed too) into a kernel equal to the reference; here with the CPU's inductor
    backend, as the GPU path compiles it with Triton's."""
    from pebench.encodings.base import Gathered

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 33, 16, generator=g) for _ in range(3))
    index = torch.randint(0, 5, (2, 33, 33), generator=g)
    terms = [Gathered(torch.randn(2, 3, 33, 5, generator=g), index),
             Gathered(torch.randn(1, 1, 33, 5, generator=g), index[:1].to(torch.uint8), transposed=True)]
    multiplier, bias = torch.rand(1, 3, 33, 33, generator=g) + 0.5, torch.randn(3, 33, 33, generator=g)
    score_mod = attention.score_mod_for(q, bias, multiplier, terms)
    from torch.nn.attention.flex_attention import flex_attention

    compiled = kernels.compiled(flex_attention)(q, k, v, score_mod=score_mod, scale=0.25)
    dense = bias + terms[0].dense() + terms[1].dense()
    expected = ((q * 0.25) @ k.transpose(-1, -2) * multiplier + dense).softmax(-1) @ v
    torch.testing.assert_close(compiled, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None, reason="torch.compile's CPU backend needs a C++ compiler")
def test_offset_formulas_and_block_masks_compile_once_per_grid():
    """torch.compile builds LookHere's block mask (8-token tiles, some skipped) as the eager construction does and
    traces its offset formula and mask (with ALiBi's formula beside it) into a kernel equal to SDPA reading their
    dense biases; the next block's formulas, fresh closures with another slope, reuse
    that kernel instead of compiling again."""
    from torch._dynamo.utils import counters
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    model = perturbed_model("lookhere+alibi")
    lookhere, alibi = model.pos_encoding["lookhere"], model.pos_encoding["alibi"]
    ctx = model.context((6, 5), "interp")
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 31, 16, generator=g) for _ in range(3))
    mask_mod = attention.mask_mod_for((lookhere.sees,), ctx.grid, 1)
    mask = kernels.compiled(create_block_mask)(mask_mod, None, 3, 31, 31, device="cpu", BLOCK_SIZE=8)  # as a GPU
    eager = create_block_mask(mask_mod, None, 3, 31, 31, device="cpu", BLOCK_SIZE=8)  # as a CPU builds it
    assert torch.equal(mask.to_dense(), eager.to_dense()) and mask.sparsity() > 0
    graphs = []
    for block in (0, 1):
        formulas = [lookhere.bias_by_offset(block, ctx), alibi.bias_by_offset(block, ctx)]
        score_mod = attention.score_mod_for(q, None, None, [], formulas, ctx)
        got = kernels.compiled(flex_attention)(q, k, v, score_mod=score_mod, block_mask=mask, scale=0.25)
        graphs.append(counters["stats"]["unique_graphs"])
        dense = lookhere.attention_bias(block, q, k, ctx) + alibi.attention_bias(block, q, k, ctx)
        expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=dense, scale=0.25)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert graphs[1] == graphs[0]


def test_attention_is_an_option_and_profiling_keeps_flexattention_running(tmp_path):
    """--attention flex reaches the profiled model: FLOPs are counted on the reference (the counter cannot see
    into the fused kernel), and FlexAttention runs in the timed rounds and the breakdown, never falling back; the
    path is in the record and, unless auto, in the cell key."""
    from conftest import cli

    from pebench.results import read_records

    keys = {}
    for path in ("flex", "auto"):
        out = tmp_path / f"{path}.jsonl"
        result = cli("profile", "-e", "spvit", "--res", 224, "--attention", path, "--repeats", 1, "--batch-size", 1,
                     "--out", out)
        assert result.returncode == 0, result.stderr
        (record,) = read_records(out)
        keys[path] = record["key"]
        assert record["attention"] == path and record["flops"]["gmacs"] > 0
    assert record["breakdown"]["attention_paths"] == {"explicit": 5, "sdpa": 1}  # auto on a CPU: the reference
    assert keys["flex"] != keys["auto"]
    assert read_records(tmp_path / "flex.jsonl")[0]["breakdown"]["attention_paths"] == {"flex": 5, "sdpa": 1}
    assert kernels.failure is None
