"""Training, checkpoints and evaluation on a tiny synthetic split."""

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

import pebench.training.train as train_module
from pebench.data import SyntheticData, normalize, synthetic
from pebench.data.stream import PassStats, SplitStream
from pebench.errors import PebenchError
from pebench.measure.evaluate import Tally, metrics_of, run_pass, wilson_interval
from pebench.models.checkpoint import load_checkpoint, save_checkpoint
from pebench.models.interface import LoadedModel
from pebench.results import read_records
from pebench.training.train import TrainConfig, train

TINY_DATA = "synthetic:train=64,val=24"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PEBENCH_CACHE", str(tmp_path / "cache"))


def _config(encoding="ape", epochs=2):
    return TrainConfig(encoding=encoding, data=TINY_DATA, epochs=epochs, batch_size=32)


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "ape.safetensors"
    train(_config(), path, command="test")
    return path


def test_training_writes_weights_and_a_complete_sidecar(checkpoint):
    meta = json.loads(checkpoint.with_suffix(".json").read_text())
    for key in ("encoding", "size", "patch", "train_res", "data", "seed", "epochs", "val_top1", "learning_curve",
                "command", "recipe", "env"):
        assert key in meta, key
    assert meta["encoding"] == "ape" and meta["data"] == "synthetic:seed=0,train=64,val=24"
    assert [e["epoch"] for e in meta["learning_curve"]] == [1, 2]
    for key in ("pebench", "torch", "timm", "git_sha"):
        assert key in meta["env"]
    assert not list(checkpoint.parent.glob("*.state.pt"))  # finished runs leave no resume state
    model, _ = load_checkpoint(checkpoint)
    assert model.spec.names == ("ape",)


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    straight = tmp_path / "straight.safetensors"
    train(_config(), straight)

    resumed = tmp_path / "resumed.safetensors"
    real_accuracy = train_module.accuracy
    calls = {"n": 0}

    def crash_after_first_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_accuracy(*args, **kwargs)

    monkeypatch.setattr(train_module, "accuracy", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(_config(), resumed)
    assert (tmp_path / "resumed.safetensors.state.pt").exists() and not resumed.exists()
    monkeypatch.setattr(train_module, "accuracy", real_accuracy)
    train(_config(), resumed)
    a, _ = load_checkpoint(straight)
    b, _ = load_checkpoint(resumed)
    for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), key


def test_nan_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    real_build = train_module.build_model

    def poisoned(*args, **kwargs):
        model = real_build(*args, **kwargs)
        torch.nn.init.constant_(model.head.bias, float("nan"))
        return model

    monkeypatch.setattr(train_module, "build_model", poisoned)
    with pytest.raises(PebenchError, match="loss became nan at epoch 1 step 1; lower --lr"):
        train(_config(), tmp_path / "nan.safetensors")


def _counts(model, batch_size: int, stream_batch: int = 12, workers: int = 0) -> tuple[int, int, int]:
    cpu = torch.device("cpu")
    loaded = LoadedModel("m", model, {}, "file", None)
    tally = Tally(loaded, "interp", batch_size)
    stream = SplitStream(SyntheticData(train=64, val=24), "val", 384, list(range(24)), stream_batch, workers, cpu)
    run_pass([tally], stream, cpu)
    return tally.correct1, tally.correct5, tally.n


def test_same_checkpoint_same_data_twice_gives_identical_accuracy(checkpoint):
    model, _ = load_checkpoint(checkpoint)
    first = _counts(model, 8)
    assert first[2] == 24
    assert _counts(model, 5, stream_batch=7, workers=2) == first


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


def test_corrupt_and_mismatched_checkpoints_are_one_line_errors(checkpoint, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 40)
    corrupt.with_suffix(".json").write_text(checkpoint.with_suffix(".json").read_text())
    with pytest.raises(PebenchError, match="not a readable safetensors file"):
        load_checkpoint(corrupt)

    model, meta = load_checkpoint(checkpoint)
    wrong = tmp_path / "wrong.safetensors"
    save_checkpoint(model, wrong, {**meta, "encoding": "peg"})
    with pytest.raises(PebenchError, match="do not fit the sidecar's encoding 'peg'"):
        load_checkpoint(wrong)


def pebench(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", "from pebench.cli import main; main()", *args],
                          capture_output=True, text=True, cwd=cwd)


def test_eval_cli_writes_one_record_per_cell(checkpoint, tmp_path):
    out = tmp_path / "results.jsonl"
    run = pebench("eval", "--model", str(checkpoint), "--res", "224", "--res", "384", "--data", TINY_DATA,
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
    run = pebench("eval", "--model", str(checkpoint), "--data", TINY_DATA, "--out", str(out), *args)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert out.read_text() == '{"kept": true}\n'


def test_eval_unknown_model_suggests_a_shipped_name():
    run = pebench("eval", "--model", "rope_mixd")
    assert run.returncode == 2 and "did you mean 'rope_mixed'" in run.stderr


def _timm_twin(model_path):
    from timm.models.vision_transformer import VisionTransformer

    model, meta = load_checkpoint(model_path)
    twin = VisionTransformer(img_size=meta["train_res"], patch_size=meta["patch"], embed_dim=96, depth=6, num_heads=3,
                             num_classes=meta["num_classes"], dynamic_img_size=True).eval()
    twin.load_state_dict(model.state_dict())
    return model, twin


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


def test_a_claim_excludes_a_live_process_and_is_taken_over_from_a_dead_one(tmp_path):
    from pebench.atomic import claimed

    target = tmp_path / "m.safetensors"
    claim = tmp_path / "m.safetensors.claim"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        claim.write_text(str(sleeper.pid))
        with claimed(target) as ours:
            assert not ours
        assert claim.read_text() == str(sleeper.pid)  # the live holder keeps its claim
    finally:
        sleeper.kill()
        sleeper.wait()
    with claimed(target) as ours:  # its holder is dead now: taken over, then released
        assert ours and claim.read_text() == str(os.getpid())
    assert not claim.exists()


def test_position_parameters_learn_at_their_own_rate():
    model = train_module.build_model("micro", "relpos_table", num_classes=10)
    groups = train_module.param_groups(model, 0.05, position_lr_scale=30)
    position = {id(p) for p in model.pos_encoding.parameters()}
    assert position and {id(p) for p in groups[2]["params"]} == position
    assert groups[2]["weight_decay"] == 0 and groups[0]["weight_decay"] == 0.05
    optimizer = torch.optim.AdamW(groups)
    train_module.set_lr(optimizer, 1e-3)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-3, 1e-3, 3e-2])



def test_train_all_builds_each_missing_model_with_its_zoo_settings(tmp_path, monkeypatch):
    from conftest import cli

    import pebench.zoo as zoo
    from pebench.env import git_state

    built = {}

    def fake_train(cfg, out, command="", console=None, save_dtype=None):
        built[out.stem] = cfg
        return {"val_top1": 0.5}

    monkeypatch.setattr(train_module, "train", fake_train)
    monkeypatch.setattr(zoo, "zoo_path", lambda name: tmp_path / f"{name.replace('+', '_')}.safetensors")
    (tmp_path / "ape.safetensors").write_bytes(b"built before")
    git_state.cache_clear()
    result = cli("train", "--all")
    assert result.returncode == 0, result.stderr
    assert git_state.cache_info().currsize == 1  # the commit was read before training, not when a sidecar is saved
    assert set(built) == {name.replace("+", "_") for name in zoo.ZOO} - {"ape"}
    assert [built[name].epochs for name in ("lookhere", "alibi", "shaw", "sincos", "rope_axial", "ape_peg")] == [
        8, 8, 8, 5, 2, 2]
    assert [built[name].position_lr_scale for name in ("cpb", "peg_x5", "peg", "relpos_table")] == [1, 1, 30, 30]
    assert {(cfg.batch_size, cfg.where_share) for cfg in built.values()} == {(32, 0.5)}


def test_train_all_jobs_trains_each_missing_model_once_in_worker_processes(tmp_path, monkeypatch):
    import os
    import time

    from conftest import cli

    import pebench.zoo as zoo
    from pebench.env import cpu_cores

    def fake_train(cfg, out, command="", console=None, save_dtype=None):
        time.sleep(0.2)  # long enough for the second worker to claim models too
        with open(out.with_suffix(".log"), "a") as log:
            log.write(f"{os.getpid()} {torch.get_num_threads()} {cfg.epochs}\n")
        out.write_bytes(b"built")
        return {"val_top1": 0.5}

    monkeypatch.setattr(train_module, "train", fake_train)
    monkeypatch.setattr(zoo, "zoo_path", lambda name: tmp_path / f"{name.replace('+', '_')}.safetensors")
    (tmp_path / "ape.safetensors").write_bytes(b"built before")
    result = cli("train", "--all", "--jobs", "2")
    assert result.returncode == 0, result.stderr
    logs = {path.stem: path.read_text().split("\n")[:-1] for path in tmp_path.glob("*.log")}
    assert set(logs) == {name.replace("+", "_") for name in zoo.ZOO} - {"ape"}
    assert all(len(lines) == 1 for lines in logs.values())  # each model trained by exactly one worker
    rows = [line.split() for lines in logs.values() for line in lines]
    assert len({pid for pid, _, _ in rows}) == 2 and str(os.getpid()) not in {pid for pid, _, _ in rows}
    assert {threads for _, threads, _ in rows} == {str(max(1, cpu_cores() // 2))}
    assert logs["shaw"][0].split()[2] == "8"  # the zoo settings reach the workers
    assert not list(tmp_path.glob("*.claim"))


def test_jobs_without_all_is_refused():
    from conftest import cli

    result = cli("train", "--jobs", "2")
    assert result.returncode == 2 and "use it with --all" in result.stderr
