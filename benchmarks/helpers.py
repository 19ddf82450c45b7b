"""What the benchmark scripts share (imported as ``helpers``: a script run by path has its own folder first
on ``sys.path``): an ImageNet-shaped folder of JPEGs, a random-weight timm checkpoint, timm's own
validation loop and benchmark loop as references, a memory meter for a process tree (the DataLoader
workers included), and :func:`fresh` to run one of these in a fresh interpreter.

Not a benchmark: nothing runs when this file is run.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from pebench.env import cpu_cores, device_name, git_state


def _write_jpeg(args: tuple[Path, int]) -> None:
    from PIL import Image

    path, seed = args
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(400, 641, size=2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    freq = rng.uniform(0.005, 0.05, size=3)
    image = np.stack([128 + 100 * np.sin(freq[c] * (xx * np.cos(c + seed) + yy * np.sin(c + seed)))
                      for c in range(3)], axis=-1)
    image += rng.normal(0, 12, image.shape)  # sensor noise: JPEG sizes near real photos'
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)


def make_folder(root: Path, images: int, classes: int = 100, processes: int | None = None) -> Path:
    """``images`` JPEGs of 400-640 px sides (ImageNet val's typical range) spread over ``classes`` folders;
    reused when already complete."""
    jobs = []
    for i in range(images):
        folder = root / f"n{i % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"ILSVRC2012_val_{i:08d}.JPEG"
        if not path.exists():
            jobs.append((path, i))
    if jobs:
        with ProcessPoolExecutor(processes) as pool:
            list(pool.map(_write_jpeg, jobs, chunksize=16))
    return root


def save_random_timm(name: str, path: Path, num_classes: int) -> Path:
    """A randomly initialised timm model saved as safetensors (no download; costs do not need training)."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    if not path.exists():
        save_file(timm.create_model(name, pretrained=False, num_classes=num_classes).state_dict(), path)
    return path


class TreeMemory:
    """Peak total PSS (proportional set size: shared pages split between processes) of a process and
    all its descendants, sampled every 50 ms; plain RSS would count forked workers' shared torch pages twice."""

    def __init__(self, pid: int):
        self.pid, self.peak_mb, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _tree(self) -> list[int]:
        pids, frontier = [], [self.pid]
        while frontier:
            pid = frontier.pop()
            pids.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    frontier += [int(c) for c in (task / "children").read_text().split()]
                except OSError:
                    pass
        return pids

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in self._tree():
                try:
                    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
                except OSError:
                    continue
                total += next(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:"))
            self.peak_mb = max(self.peak_mb, total / 1024)
            time.sleep(0.05)


HERE = Path(__file__).resolve().parent
#: where a benchmark run with no arguments keeps what it printed (the figures benchmarks/README.md cites)
OUTPUTS = HERE.parent / "results" / "benchmarks"


class _Both:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


@contextmanager
def kept(script: str) -> Iterator[None]:
    """Print as usual; run with no arguments (the documented figure), also keep what the script prints in
    results/benchmarks/SCRIPT.txt, under lines naming the command, the machine, the date and the commit."""
    if len(sys.argv) > 1:
        yield
        return
    name = Path(script).stem
    sha, dirty = git_state()
    commit = f"{(sha or 'unknown')[:7]}{' (with uncommitted changes)' if dirty else ''}"
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with (OUTPUTS / f"{name}.txt").open("w") as log:
        log.write(f"# python benchmarks/{name}.py (no arguments)\n# machine: {device_name(torch.device('cpu'))}, "
                  f"{cpu_cores()} cores; date: {time.strftime('%Y-%m-%d', time.gmtime())}; commit: {commit}\n")
        out, sys.stdout = sys.stdout, _Both(sys.stdout, log)
        try:
            yield
        finally:
            sys.stdout = out
            log.write(f"# {time.time() - started:.0f} s\n")


def fresh(call: str) -> list[str]:
    """A command that prints ``json.dumps(helpers.<call>)`` from a fresh interpreter (a measurement that must
    not share a process with the one before it); run it with ``cwd=HERE``, where ``helpers`` imports."""
    return [sys.executable, "-c", f"import json; from pathlib import Path; import helpers; "
                                  f"print(json.dumps(helpers.{call}))"]


def run_measured(command: list[str], cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run a command; returns its result and the peak PSS (MB) of its process tree."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    with TreeMemory(process.pid) as meter:
        out, err = process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, out, err), meter.peak_mb


def timm_loop(folder: Path, checkpoint: Path, name: str, res: int, crop_pct: float, workers: int, batch_size: int,
              n: int | None, device: str) -> dict:
    """timm's validate.py way, reduced to what affects speed and counts."""
    import timm
    import torch
    from safetensors.torch import load_file
    from timm.data import ImageDataset, create_transform

    state = load_file(checkpoint)
    net = timm.create_model(name, pretrained=False, num_classes=state["head.weight"].shape[0])
    net.load_state_dict(state)
    net = net.eval().to(device)
    dataset = ImageDataset(str(folder), transform=create_transform(input_size=res, crop_pct=crop_pct,
                                                                   interpolation="bicubic"))
    if n is not None:
        dataset = torch.utils.data.Subset(dataset, range(n))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         pin_memory=device == "cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu",
                                                                                                    enabled=False)
    correct1 = correct5 = images = 0
    started = time.perf_counter()
    with torch.inference_mode(), autocast:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            top5 = net(x).topk(5, dim=1).indices
            correct1 += int((top5[:, 0] == y).sum())
            correct5 += int((top5 == y[:, None]).any(dim=1).sum())
            images += len(y)
    wall = time.perf_counter() - started
    return {"images": images, "correct_top1": correct1, "correct_top5": correct5, "img_per_s": images / wall}


def timm_benchmark_style(name: str, res: int, batch: int, channels_last: bool, device: str = "cuda",
                         compile: bool = False, warmup: int = 10, steps: int = 40) -> dict:
    """timm's benchmark.py inference loop, reduced: autocast bf16, no_grad, synchronised wall time."""
    import timm
    import torch

    model = timm.create_model(name, pretrained=False, img_size=res).to(device).eval()
    x = torch.randn(batch, 3, res, res, device=device)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    if compile:
        model = torch.compile(model)
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16):
        for _ in range(warmup):
            model(x)
        synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            model(x)
        synchronize()
    return {"img_per_s": batch * steps / (time.perf_counter() - started)}
