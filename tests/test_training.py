"""Training and checkpoints on a tiny synthetic split: weights and sidecars, resume, bad checkpoints, the
zoo's `pebench train --all`."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import cli, tiny_config

import pebench.training.train as train_module
from pebench.errors import PebenchError
from pebench.models.checkpoint import load_checkpoint, save_checkpoint
from pebench.training.train import train

pytestmark = pytest.mark.usefixtures("private_cache")

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


@pytest.mark.slow
def test_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    straight = tmp_path / "straight.safetensors"
    train(tiny_config(), straight)

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
        train(tiny_config(), resumed)
    assert (tmp_path / "resumed.safetensors.state.pt").exists() and not resumed.exists()
    monkeypatch.setattr(train_module, "accuracy", real_accuracy)
    train(tiny_config(), resumed)
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
        train(tiny_config(), tmp_path / "nan.safetensors")


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


def test_position_parameters_learn_at_their_own_rate():
    model = train_module.build_model("micro", "relpos_table", num_classes=10)
    groups = train_module.param_groups(model, 0.05, position_lr_scale=30)
    position = {id(p) for p in model.pos_encoding.parameters()}
    assert position and {id(p) for p in groups[2]["params"]} == position
    assert groups[2]["weight_decay"] == 0 and groups[0]["weight_decay"] == 0.05
    optimizer = torch.optim.AdamW(groups)
    train_module.set_lr(optimizer, 1e-3)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-3, 1e-3, 3e-2])


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


def test_train_all_builds_each_missing_model_with_its_zoo_settings(tmp_path, monkeypatch):
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
    result = cli("train", "--jobs", "2")
    assert result.returncode == 2 and "use it with --all" in result.stderr
