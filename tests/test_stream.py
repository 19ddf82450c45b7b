"""Streaming evaluation: timm's numbers, one decode per resolution, the cache, and faults."""

import os
import signal

import numpy as np
import pytest
import torch
from conftest import cli
from PIL import Image

from pebench.data import Items, SyntheticData, normalize, parse_data
from pebench.data.stream import SplitStream
from pebench.errors import RunFailed
from pebench.results import read_records

CPU = torch.device("cpu")



@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PEBENCH_CACHE", str(tmp_path / "default-cache"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Twelve photo-like JPEGs of different sizes and aspect ratios in three class folders."""
    root = tmp_path_factory.mktemp("folder") / "val"
    rng = np.random.default_rng(0)
    for i in range(12):
        h, w = rng.integers(90, 200, size=2)
        yy, xx = np.mgrid[0:h, 0:w]
        image = np.stack([(xx * (i + 3)) % 256, (yy * 5 + i * 40) % 256, ((xx + yy) * 2) % 256], axis=-1)
        noisy = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
        (root / f"class{i % 3}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(noisy).save(root / f"class{i % 3}" / f"img{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def timm_checkpoint(tmp_path_factory):
    """A randomly initialised DeiT-tiny with a 3-class head, saved as a fine-tuner would."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=3)
    path = tmp_path_factory.mktemp("ckpt") / "deit3.safetensors"
    save_file(net.state_dict(), path)
    return path


def test_streamed_inputs_equal_timm_eval_transform_bit_for_bit(folder):
    from timm.data import create_transform

    data = parse_data(f"imagefolder:{folder}", crop_pct=0.9)
    transform = create_transform(input_size=64, crop_pct=0.9, interpolation="bicubic", is_training=False)
    stream = SplitStream(data, "val", 64, list(range(12)), 5, 2, CPU)
    images = torch.cat([normalize(batch) for batch, _ in stream])
    expected = torch.stack([transform(Image.open(path).convert("RGB")) for path, _ in data.files])
    assert torch.equal(images, expected)
    assert stream.stats.images == 12 and stream.stats.workers == 2 and stream.stats.work_s > 0


def test_eval_counts_equal_timm_validation_loop(folder, timm_checkpoint, tmp_path):
    """pebench eval on a folder gives the correct counts of timm's own way: ImageDataset +
    create_transform + DataLoader with workers, the model under inference_mode."""
    import timm
    from safetensors.torch import load_file
    from timm.data import ImageDataset, create_transform

    out = tmp_path / "r.jsonl"
    run = cli("eval", "--model", "timm:deit_tiny_patch16_224", "--checkpoint", timm_checkpoint, "--data",
              f"imagefolder:{folder}", "--res", 224, "--mode", "interp", "--workers", 2, "--batch-size", 5,
              "--out", out)
    assert run.returncode == 0, run.stderr
    record = read_records(out)[0]

    net = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=3).eval()
    net.load_state_dict(load_file(timm_checkpoint))
    dataset = ImageDataset(str(folder), transform=create_transform(input_size=224, crop_pct=0.875,
                                                                   interpolation="bicubic"))
    correct, per_class = 0, [0, 0, 0]
    with torch.inference_mode():
        for x, y in torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2):
            hits = net(x).argmax(1) == y
            correct += int(hits.sum())
            for label, hit in zip(y.tolist(), hits.tolist(), strict=True):
                per_class[label] += hit
    assert record["metrics"]["n"] == len(dataset) == 12
    assert record["metrics"]["correct_top1"] == correct
    # a folder's classes form no groups; its per-class counts are timm's too
    assert record["metrics"]["groups"] == {} and record["data"]["class_groups"] == {}
    assert record["metrics"]["per_class"] == {"n": [4, 4, 4], "correct_top1": per_class}
    assert record["data"]["class_names"] == ["class0", "class1", "class2"]
    assert 0 < correct < 12  # a head that separates some classes, not a degenerate constant


def test_a_suite_decodes_each_resolution_once(folder, monkeypatch, tmp_path):
    """3 models x 2 modes x 2 resolutions: every file is decoded once per resolution."""
    import pebench.data.imagefolder as imagefolder
    from pebench.runner.cells import expand
    from pebench.runner.runner import prepare, run_cells
    from pebench.runner.suite import Suite

    decoded = []
    real_decode = imagefolder.decode
    monkeypatch.setattr(imagefolder, "decode", lambda path, res, crop: decoded.append(res) or real_decode(path, res,
                                                                                                           crop))
    suite = Suite(name="three", models=("ape", "sincos", "peg"), resolutions=(64, 96), data=f"imagefolder:{folder}",
                  batch_size=4, workers=0)
    cells = expand(suite)
    records = run_cells(prepare(suite, CPU, {"eval"}), cells, {c.key for c in cells}, tmp_path / "r.jsonl")
    assert len(records) == 12 and sorted(decoded) == [64] * 12 + [96] * 12
    computed = [r for r in records if r["status"] == "ok" and "measured_as" not in r]
    # per resolution: ape interp (native is n/a off 224), sincos both modes, peg native (interp reuses it)
    assert len(computed) == 8 and {r["timing"]["cells_in_pass"] for r in computed} == {4}
    assert all(r["data"]["n"] == 12 for r in records)


def test_unreadable_and_truncated_files_are_skipped_listed_and_counted(folder, tmp_path):
    import shutil

    root = tmp_path / "val"
    shutil.copytree(folder, root)
    whole = (root / "class0" / "img0.jpg").read_bytes()
    (root / "class0" / "img0.jpg").write_bytes(whole[: len(whole) // 2])  # truncated mid-scan
    (root / "class1" / "notes.png").write_text("not an image")
    out = tmp_path / "r.jsonl"
    run = cli("eval", "--model", "ape", "--data", f"imagefolder:{root}", "--res", 64, "--mode", "interp",
              "--workers", 2, "--batch-size", 4, "--out", out)
    assert run.returncode == 0, run.stderr
    (record,) = read_records(out)
    assert record["data"]["requested"] == 13 and record["data"]["n"] == 11 and record["data"]["skipped"] == 2
    assert record["metrics"]["n"] == 11
    assert record["metrics"]["per_class"]["n"] == [3, 4, 4]  # class0's truncated file and class1's text file
    names = sorted(name.split(" ")[0] for name in record["data"]["skipped_files"])
    assert names == ["class0/img0.jpg", "class1/notes.png"]
    assert "2 unreadable file(s) skipped at 64 px" in run.stdout and "class1/notes.png" in run.stdout


def test_cache_is_written_once_then_read_and_gives_the_same_counts(folder, tmp_path):
    cache = tmp_path / "cache"
    args = ["eval", "--model", "ape", "--model", "peg", "--data", f"imagefolder:{folder}", "--res", 64,
            "--workers", 2, "--batch-size", 4, "--cache", cache]
    first = cli(*args, "--out", tmp_path / "a.jsonl")
    second = cli(*args, "--out", tmp_path / "b.jsonl")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert len(list(cache.glob("imagefolder-val-64px-*.u8"))) == 1 and not list(cache.glob(".*tmp*"))
    a, b = read_records(tmp_path / "a.jsonl"), read_records(tmp_path / "b.jsonl")
    assert {r["timing"]["data_source"] for r in a if r["timing"]} == {"decoded"}
    assert {r["timing"]["data_source"] for r in b if r["timing"]} == {"cache"}
    assert [r["metrics"] for r in a] == [r["metrics"] for r in b]


def test_a_cache_that_would_not_fit_is_a_one_line_error_and_writes_nothing(folder, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    import pebench.data.cache as cache_module

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    out = tmp_path / "r.jsonl"
    out.write_text("")
    run = cli("eval", "--model", "ape", "--data", f"imagefolder:{folder}", "--res", 64, "--cache", tmp_path / "c",
              "--out", out)
    assert run.returncode == 2 and "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "has 0.0 GB free but 12 images at 64 px need" in run.stderr
    assert list((tmp_path / "c").iterdir()) == [] and out.read_text() == ""
    monkeypatch.setattr(cache_module.shutil, "disk_usage", shutil.disk_usage)


def test_an_abandoned_pass_leaves_no_cache_behind(tmp_path):
    cache = tmp_path / "c"
    stream = SplitStream(SyntheticData(train=8, val=20), "val", 32, list(range(20)), 4, 0, CPU, cache, True)
    batches = iter(stream)
    next(batches)
    batches.close()  # the consumer stopped (an exception, Ctrl-C) after one batch
    assert list(cache.iterdir()) == []


class _DyingData:
    """A dataset whose reads kill the worker process that runs them, as the OOM killer would."""

    spec = "dying:"

    def read(self, split, res, positions):
        os.kill(os.getpid(), signal.SIGKILL)
        return Items(torch.zeros(0), torch.zeros(0), torch.zeros(0, dtype=torch.bool), [])


def test_a_dying_worker_is_a_clear_error_not_a_hang():
    stream = SplitStream(_DyingData(), "val", 32, list(range(8)), 4, 1, CPU)
    with pytest.raises(RunFailed, match="a data worker process died .*rerun with --workers 0"):
        for _ in stream:
            pass


def test_interrupted_pass_leaves_no_partial_record_and_the_rerun_resumes(tmp_path, monkeypatch):
    import pebench.measure.evaluate as evaluate

    out = tmp_path / "r.jsonl"
    args = ["eval", "--model", "ape", "--model", "peg", "--res", 224, "--res", 384, "--data",
            "synthetic:train=8,val=12", "--batch-size", 4, "--workers", 0, "--out", out]
    real_step = evaluate.Tally.step

    def interrupt_at_384(self, x, y, autocast):
        if x.shape[-1] == 384:
            raise KeyboardInterrupt
        return real_step(self, x, y, autocast)

    monkeypatch.setattr(evaluate.Tally, "step", interrupt_at_384)
    stopped = cli(*args)
    assert stopped.returncode == 130 and "rerun the same command to resume" in stopped.stderr
    assert "kept 4 new records" in stopped.stderr  # the 224 px pass's, of both models and modes
    kept = read_records(out)
    assert [(r["res"], r["mode"]) for r in kept] == [(224, "native"), (224, "interp")] * 2
    monkeypatch.setattr(evaluate.Tally, "step", real_step)
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    records = read_records(out)
    assert len(records) == 8 and records[:4] == kept and {r["res"] for r in records[4:]} == {384}
