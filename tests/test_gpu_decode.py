"""--decode gpu: the workers hand over JPEG bytes and the device decodes and transforms them. Its logic runs on
the CPU here (torchvision's decode_jpeg decodes on either device): it matches the PIL path within two grey
levels, sends non-JPEGs and rejected JPEGs through PIL, names what nothing decodes, and refuses a machine or a
dataset it does not apply to."""

import pickle

import numpy as np
import pytest
import torch
from conftest import cli
from PIL import Image

from pebench.data import parse_data
from pebench.data.gpu_decode import GpuJpegFolder
from pebench.data.imagefolder import ImageFolderData
from pebench.data.stream import SplitStream
from pebench.errors import PebenchError
from pebench.runner.cells import expand
from pebench.runner.suite import Suite


@pytest.fixture
def folder(tmp_path):
    """Two classes of noisy JPEGs, a progressive one, a CMYK one, a PNG and a corrupt JPEG."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            h, w = (int(v) for v in rng.integers(180, 260, 2))
            yy, xx = np.mgrid[0:h, 0:w]
            image = np.stack([128 + 100 * np.sin(0.03 * (xx + k * yy)) for k in (1, 2, 3)], -1)
            image = np.clip(image + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(tmp_path / name / f"{i}.jpg", quality=90, progressive=i == 2)
    Image.new("CMYK", (200, 190), (10, 200, 30, 5)).save(tmp_path / "a" / "cmyk.jpg")
    Image.new("RGB", (200, 190), (10, 200, 30)).save(tmp_path / "b" / "flat.png")
    (tmp_path / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG after all")
    return tmp_path


def test_the_device_path_matches_the_pil_path_and_names_what_nothing_decodes(folder):
    data = ImageFolderData.open(str(folder))
    positions = list(range(data.size("val")))
    reference = data.read("val", 160, positions)
    on_device = GpuJpegFolder(data)
    items = on_device.finish(on_device.read("val", 160, positions), 160, torch.device("cpu"))
    assert items.valid.tolist() == reference.valid.tolist() and items.valid.sum() == 8
    assert len(items.problems) == 1 and items.problems[0].startswith("b/broken.jpg (UnidentifiedImageError")
    assert torch.equal(items.labels, reference.labels)
    difference = (items.images.int() - reference.images.int()).abs()
    assert difference.max() <= 2 and difference.float().mean() < 0.05  # IDCT and resize rounding only


def test_a_batch_the_decoder_rejects_is_decoded_image_by_image_then_by_pil(folder, monkeypatch):
    from pebench.data import gpu_decode

    calls = []
    real = gpu_decode.decode_jpeg

    def picky(payload, mode, device):
        calls.append("batch" if isinstance(payload, list) else "one")
        if isinstance(payload, list) or payload.numel() % 2:  # every batch, and some single files
            raise RuntimeError("nvJPEG: unsupported")
        return real(payload, mode=mode, device=device)

    monkeypatch.setattr(gpu_decode, "decode_jpeg", picky)
    data = GpuJpegFolder(ImageFolderData.open(str(folder)))
    positions = list(range(data.size("val")))
    items = data.finish(data.read("val", 160, positions), 160, torch.device("cpu"))
    assert calls[0] == "batch" and calls.count("one") == 8  # the 8 JPEG files, one by one (the PNG never got here)
    assert items.valid.sum() == 8  # what the decoder refused, PIL decoded (not the broken one)


def test_a_stream_with_device_decoding_counts_like_the_cpu_path_and_skips_the_cache(folder, tmp_path):
    data = parse_data(f"imagefolder:{folder}", decode="gpu")
    cache = tmp_path / "cache"
    stream = SplitStream(data, "val", 160, list(range(data.size("val"))), 4, 0, torch.device("cpu"), cache)
    images = sum(batch.shape[0] for batch, _ in stream)
    assert images == 8 and stream.stats.valid == 8 and len(stream.stats.skipped) == 1
    assert stream.stats.source == "decoded on cpu" and not cache.exists()
    stats = stream.stats  # the slower of the workers (reading bytes) and the main process (decoding)
    assert stats.device_decode_s > 0 and stats.data_img_per_s == pytest.approx(
        min(stats.images / stats.work_s, stats.images / stats.device_decode_s))
    in_workers = SplitStream(pickle.loads(pickle.dumps(data)), "val", 160, list(range(data.size("val"))), 4, 2,
                             torch.device("cpu"))
    assert sum(batch.shape[0] for batch, _ in in_workers) == 8 and in_workers.stats.workers == 2


def test_decode_gpu_is_refused_where_it_does_not_apply(folder):
    with pytest.raises(PebenchError, match="applies to imagefolder:PATH"):
        parse_data("synthetic", decode="gpu")
    on_cpu = cli("eval", "-m", "sincos", "--res", 224, "--data", f"imagefolder:{folder}", "--decode", "gpu",
                 "--device", "cpu")
    assert on_cpu.returncode == 2 and "--decode gpu needs a CUDA device and this run is on cpu" in on_cpu.stderr
    synthetic = cli("eval", "-m", "sincos", "--res", 224, "--decode", "gpu")
    assert synthetic.returncode == 2 and "not to 'synthetic'" in synthetic.stderr
    assert len(synthetic.stderr.strip().splitlines()) == 1 and "Traceback" not in synthetic.stderr


def test_device_decoding_is_another_cell_and_the_cpu_path_keeps_its_keys(folder):
    suite = Suite(name="s", models=("sincos",), resolutions=(224,), modes=("native",), data=f"imagefolder:{folder}",
                  device="cuda")
    cpu_keys = {c.key for c in expand(suite)}
    gpu = {c.key for c in expand(Suite(**{**suite.__dict__, "decode": "gpu"}))}
    assert cpu_keys.isdisjoint(gpu)
    assert "decode" not in next(iter(expand(suite))).config


def test_a_suite_with_device_decoding_runs_through_the_cell_runner(folder, tmp_path, monkeypatch, private_cache):
    """The whole eval path with decode: gpu, its device check lifted so that the CPU stands in for the GPU: the
    records say the decode, score the 8 decodable images and name the broken one."""
    from pebench.cli import suites
    from pebench.results import read_records

    monkeypatch.setattr(suites, "check_decode_device", lambda decode, device: None)
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\nmodels: [sincos]\nresolutions: [224]\nmodes: [native]\ndata: imagefolder:{folder}\n"
                     "decode: gpu\ndevice: cpu\nworkers: 0\nbatch_size: 4\n")
    result = cli("run", suite, "--out", tmp_path / "run")
    assert result.returncode == 0, result.stderr
    (record,) = [r for r in read_records(tmp_path / "run" / "results.jsonl") if r["kind"] == "eval"]
    assert record["data"]["decode"] == "gpu" and record["metrics"]["n"] == 8 and record["data"]["skipped"] == 1
    assert record["timing"]["data_source"] == "decoded on cpu"
