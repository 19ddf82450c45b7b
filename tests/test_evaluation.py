"""Evaluation: tallies and their counts, out-of-memory back-off, torchrun's reduction, `pebench eval`'s
records and errors, and agreement with timm."""

import hashlib

import pytest
import torch
from conftest import TINY_DATA, cli

from pebench.data import SyntheticData, normalize, synthetic
from pebench.data.stream import PassStats, SplitStream
from pebench.errors import PebenchError
from pebench.measure.evaluate import Tally, metrics_of, run_pass, wilson_interval
from pebench.models.checkpoint import load_checkpoint
from pebench.models.interface import LoadedModel
from pebench.results import read_records

pytestmark = pytest.mark.usefixtures("private_cache")

def _counts(model, batch_size: int, stream_batch: int = 12, workers: int = 0) -> tuple[int, int, int]:
    cpu = torch.device("cpu")
    loaded = LoadedModel("m", model, {}, "file", None)
    tally = Tally(loaded, "interp", batch_size)
    stream = SplitStream(SyntheticData(train=64, val=24), "val", 384, list(range(24)), stream_batch, workers, cpu)
    run_pass([tally], stream, cpu)
    return tally.correct1, tally.correct5, tally.n


@pytest.mark.slow
def test_same_checkpoint_same_data_twice_gives_identical_accuracy(checkpoint):
    model, _ = load_checkpoint(checkpoint)
    first = _counts(model, 8)
    assert first[2] == 24
    assert _counts(model, 5, stream_batch=7, workers=2) == first


@pytest.mark.slow
def test_out_of_memory_halves_the_batch_and_keeps_the_counts(checkpoint):
    model, _ = load_checkpoint(checkpoint)

    class Greedy(torch.nn.Module):
        """Fails like an exhausted allocator on more than 3 images at once."""

        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x, mode):
            if len(x) > 3:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return self.inner(x, mode)

    assert _counts(Greedy(), 12) == _counts(model, 12)


def test_per_class_and_group_counts_add_up_and_match_the_predictions(checkpoint):
    model, _ = load_checkpoint(checkpoint)
    cpu, data = torch.device("cpu"), SyntheticData(train=64, val=24)
    tally = Tally(LoadedModel("m", model, {}, "file", None), "interp", 5, data.num_classes)  # chunks of 5 of 12
    run_pass([tally], SplitStream(data, "val", 224, list(range(24)), 12, 0, cpu), cpu)
    metrics = metrics_of(tally, data.class_groups)
    per_n, per_correct = [0] * 10, [0] * 10  # the same predictions, counted one image at a time
    with torch.inference_mode():
        for images, labels in SplitStream(data, "val", 224, list(range(24)), 24, 0, cpu):
            hits = model(normalize(images), "interp").argmax(1) == labels
            for label, hit in zip(labels.tolist(), hits.tolist(), strict=True):
                per_n[label] += 1
                per_correct[label] += hit
    assert metrics["per_class"] == {"n": per_n, "correct_top1": per_correct}
    assert per_n == [3, 3, 3, 3, 2, 2, 2, 2, 2, 2]  # labels are position % 10
    assert sum(per_correct) == metrics["correct_top1"] == tally.correct1 and sum(per_n) == metrics["n"] == 24
    where, what = metrics["groups"]["where"], metrics["groups"]["what"]
    assert list(metrics["groups"]) == ["where", "what"] and (where["n"], what["n"]) == (9, 15)
    assert (where["correct_top1"], what["correct_top1"]) == (sum(per_correct[:3]), sum(per_correct[3:]))
    assert where["correct_top1"] + what["correct_top1"] == metrics["correct_top1"]
    assert where["top1"] == where["correct_top1"] / 9
    assert what["top1_ci95"] == list(wilson_interval(what["correct_top1"], 15))
    assert metrics_of(tally)["groups"] == {} and metrics_of(tally)["per_class"] == metrics["per_class"]


def test_distributed_reduce_sums_per_class_counts_of_every_length():
    """One gloo process: the per-class counts ride in the reduced rows and come back unchanged, a
    shorter tally's (labels seen so far) padded to the longest."""
    import torch.distributed as dist

    from pebench.measure.evaluate import _reduce

    full, short = Tally(None, "native", 4, num_classes=3), Tally(None, "interp", 4)
    full.correct1, full.n, full.class_n, full.class_correct1 = 3, 5, torch.tensor([2, 0, 3]), torch.tensor([1, 0, 2])
    short.correct1, short.n, short.class_n, short.class_correct1 = 1, 2, torch.tensor([1, 1]), torch.tensor([0, 1])
    stats = PassStats(workers=0, source="decoded", images=5, valid=5)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        _reduce([full, short], stats, 1.0, torch.device("cpu"))
    finally:
        dist.destroy_process_group()
    assert (full.correct1, full.n, short.correct1, short.n, stats.images, stats.valid) == (3, 5, 1, 2, 5, 5)
    assert full.class_n.tolist() == [2, 0, 3] and full.class_correct1.tolist() == [1, 0, 2]
    assert short.class_n.tolist() == [1, 1, 0] and short.class_correct1.tolist() == [0, 1, 0]
    assert metrics_of(full, {"a": [0, 1], "b": [2]})["groups"]["b"]["correct_top1"] == 2


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(80, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.7112, 0.8666)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_eval_cli_writes_one_record_per_cell(checkpoint, tmp_path):
    out = tmp_path / "results.jsonl"
    run = cli("eval", "--model", str(checkpoint), "--res", "224", "--res", "384", "--data", TINY_DATA,
                  "--n", "16", "--out", str(out))
    assert run.returncode == 0, run.stderr
    records = read_records(out)
    assert [(r["res"], r["mode"], r["status"]) for r in records] == [
        (224, "native", "ok"), (224, "interp", "ok"), (384, "native", "not_applicable"), (384, "interp", "ok")]
    ok = records[-1]
    assert ok["metrics"]["n"] == 16 and 0 <= ok["metrics"]["top1"] <= 1
    assert ok["metrics"]["top1_ci95"][0] <= ok["metrics"]["top1"] <= ok["metrics"]["top1_ci95"][1]
    assert ok["data"]["fingerprint"] and ok["env"]["torch"]
    assert ok["model"]["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert ok["model"]["path"] == str(checkpoint)
    assert "trained 14x14 grid" in records[2]["reason"]
    groups, per_class = ok["metrics"]["groups"], ok["metrics"]["per_class"]
    assert ok["data"]["class_groups"] == {"where": [0, 1, 2], "what": [3, 4, 5, 6, 7, 8, 9]}
    assert ok["data"]["class_names"] == synthetic.CLASS_NAMES and len(per_class["n"]) == 10
    assert per_class["n"] == [2] * 6 + [1] * 4 and sum(per_class["correct_top1"]) == ok["metrics"]["correct_top1"]
    assert {g: groups[g]["n"] for g in groups} == {"where": 6, "what": 10}
    assert groups["where"]["correct_top1"] + groups["what"]["correct_top1"] == ok["metrics"]["correct_top1"]
    assert records[1]["measured_as"] == "native" and records[1]["metrics"] == records[0]["metrics"]
    assert "where" in run.stdout and "what" in run.stdout  # the table's per-group line and its title
    assert "n/a" in run.stdout and "384 interp" in run.stdout


@pytest.mark.parametrize("args,message", [
    (["--res", "200"], "--res 200 is not a multiple of the patch size 16"),
    (["--n", "0"], "--n must be a positive number"),
    (["--data", "synthetik"], "unknown dataset"),
    (["--device", "tpu"], "unknown device"),
])
def test_eval_bad_input_exits_2_with_one_line_and_keeps_existing_results(checkpoint, tmp_path, args, message):
    out = tmp_path / "results.jsonl"
    out.write_text('{"kept": true}\n')
    run = cli("eval", "--model", str(checkpoint), "--data", TINY_DATA, "--out", str(out), *args)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert out.read_text() == '{"kept": true}\n'


def test_eval_unknown_model_suggests_a_shipped_name():
    run = cli("eval", "--model", "rope_mixd")
    assert run.returncode == 2 and "did you mean 'rope_mixed'" in run.stderr


def _timm_twin(model_path):
    from timm.models.vision_transformer import VisionTransformer

    model, meta = load_checkpoint(model_path)
    twin = VisionTransformer(img_size=meta["train_res"], patch_size=meta["patch"], embed_dim=96, depth=6, num_heads=3,
                             num_classes=meta["num_classes"], dynamic_img_size=True).eval()
    twin.load_state_dict(model.state_dict())
    return model, twin


@pytest.mark.slow
@pytest.mark.parametrize("which", ["shipped", "trained here"])
def test_ape_at_384_interp_predicts_like_timm_dynamic_img_size(which, request):
    from pebench.data import normalize
    from pebench.zoo import zoo_path

    model, twin = _timm_twin(zoo_path("ape") if which == "shipped" else request.getfixturevalue("checkpoint"))
    images, labels, *_ = SyntheticData(train=64, val=48).read("val", 384, list(range(48)))
    x = normalize(images)
    with torch.inference_mode():
        ours, theirs = model(x, "interp"), twin(x)
    assert torch.equal(ours.argmax(1), theirs.argmax(1))
    assert (ours - theirs).abs().max() <= 1e-4
    if which == "shipped":
        assert (ours.argmax(1) == labels).float().mean() > 0.5  # a trained model, not a random one


def test_results_file_tolerates_only_a_torn_last_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n{"c": ')
    assert read_records(path) == [{"a": 1}, {"b": 2}]
    path.write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(PebenchError, match="line 2 is not a JSON record"):
        read_records(path)
