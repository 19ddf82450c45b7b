"""Helpers the image-folder benchmarks share: an ImageNet-shaped folder, timm's validation loop, and a
memory meter for a process tree (the DataLoader workers included).

    python benchmarks/imagenet_like.py timm-loop --folder DIR --checkpoint F --res 224 --workers 2 --n N
prints one JSON line: timm's own way of evaluating a folder (ImageDataset + create_transform +
DataLoader with workers and pinned memory, the model under inference_mode, bf16 autocast on CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


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


def run_measured(command: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """Run a command; returns its result and the peak PSS (MB) of its process tree."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["timm-loop"])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--name", default="deit_tiny_patch16_224")
    parser.add_argument("--res", type=int, default=224)
    parser.add_argument("--crop-pct", type=float, default=0.875)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n", type=int)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(json.dumps(timm_loop(args.folder, args.checkpoint, args.name, args.res, args.crop_pct, args.workers,
                               args.batch_size, args.n, args.device)))


if __name__ == "__main__":
    main()
