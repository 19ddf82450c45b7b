"""What the benchmark scripts share (imported as ``helpers``: a script run by path has its own folder first
on ``sys.path``): an ImageNet-shaped folder of JPEGs, a random-weight timm checkpoint, timm's own
validation loop and benchmark loop as references, a memory meter for a process tree (the DataLoader
workers included), and :func:`fresh` to run one of these in a fresh interpreter.

Not a benchmark: nothing runs when this file is run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
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


def _timed_calls(calls: dict[str, Callable], device: torch.device, rounds: int = 5) -> dict[str, float]:
    """Median milliseconds per call of each, timed in interleaved rounds (pebench.measure.speed)."""
    from pebench.measure.speed import Timed, interleaved_rounds

    items = [Timed(name, call, 1) for name, call in calls.items()]
    interleaved_rounds(items, device, rounds, min_block_s=0.05, max_warmup_s=2.0)
    return {item.name: 1000 * statistics.median(item.seconds_per_call) for item in items}


def attention_call(device: str = "cuda", tokens: int = 4097, batch: int = 8, heads: int = 6, dim: int = 64) -> dict:
    """One attention call in bf16 (fp32 on a CPU) at ``tokens`` (a class token and a square grid), each way
    pebench can run one: SDPA without a bias (flash where available), SDPA with a precomputed bias,
    FlexAttention reading that bias, computing ALiBi's and LookHere's from the offset (LookHere's with its block
    mask), and applying a multiplier and a bias inside the kernel, and the explicit chunks (the reference for
    multiplying encodings): median ms."""
    from pebench.encodings import build_encoding
    from pebench.encodings.base import Arch, Context
    from pebench.models.attention import explicit_attention, flex_attention_with_terms

    dev = torch.device(device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    g = torch.Generator(device=dev).manual_seed(0)
    q, k, v = (torch.randn(batch, heads, tokens, dim, device=dev, dtype=dtype, generator=g) for _ in range(3))
    bias = torch.randn(1, heads, tokens, tokens, device=dev, dtype=dtype, generator=g)
    multiplier = 1 + 0.1 * torch.randn(1, heads, tokens, tokens, device=dev, dtype=dtype, generator=g)
    arch = Arch(dim=heads * dim, depth=1, num_heads=heads, trained_grid=(16, 16), num_prefix=1)
    none, side = build_encoding("none", arch), round((tokens - 1) ** 0.5)
    ctx = Context(grid=(side, side), trained_grid=arch.trained_grid, mode="native", num_prefix=1)
    formulas = {name: build_encoding(name, arch).to(dev)[name].bias_by_offset(0, ctx) for name in ("alibi", "lookhere")}
    scale = dim**-0.5
    with torch.inference_mode():
        reference = explicit_attention(q, k, v, scale, bias, multiplier, none, 0, None)
        fused = flex_attention_with_terms(q, k, v, scale, bias, multiplier)
        calls = {"sdpa_no_bias": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v),
                 "sdpa_bias": lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias),
                 "flex_bias": lambda: flex_attention_with_terms(q, k, v, scale, bias, None),
                 **{f"flex_{name}_formula": lambda f=formula: flex_attention_with_terms(q, k, v, scale, None, None, [],
                                                                                      [f], ctx)
                    for name, formula in formulas.items()},
                 "flex_multiplier_bias": lambda: flex_attention_with_terms(q, k, v, scale, bias, multiplier),
                 "explicit_multiplier_bias": lambda: explicit_attention(q, k, v, scale, bias, multiplier, none, 0,
                                                                       None)}
        ms = _timed_calls(calls, dev)
    return {"tokens": tokens, "batch": batch, "heads": heads, "head_dim": dim, "dtype": str(dtype), "ms": ms,
            "flex_vs_explicit_max_abs_diff": (fused.float() - reference.float()).abs().max().item()}


def attention_paths(device: str = "cuda", size: str = "small", res: int = 1024, batch: int = 32,
                    spec: str = "spvit") -> dict:
    """``spec`` (SP-ViT, iRPE, ALiBi, LookHere, RoPE) on ``size`` at ``res`` with position parameters that
    matter (randomly moved from their init), bf16 autocast on CUDA: time per forward on the reference path and
    fused (FlexAttention, the compiled rotation), interleaved, the largest logit difference between the two in
    each mode (beside the logits' spread), and the peak memory of one forward on each path (CUDA)."""
    from contextlib import nullcontext

    from pebench.measure.speed import Timed, interleaved_rounds, time_ratio
    from pebench.models.vit import build_model

    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model(size, spec, num_classes=10).eval().to(dev)
    with torch.no_grad():
        for p in model.pos_encoding.parameters():
            p.add_(0.5 * torch.randn_like(p))
    x = torch.randn(batch, 3, res, res, device=dev)

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else nullcontext()

    def forward(path: str, images: torch.Tensor, mode: str = "native") -> torch.Tensor:
        model.attention_path = path
        with torch.inference_mode(), autocast():
            return model(images, mode).float()

    agreement = {}
    for mode in ("native", "interp", "scale=0.5"):
        reference, fused = forward("reference", x[:4], mode), forward("flex", x[:4], mode)
        agreement[mode] = {"max_abs_diff": (fused - reference).abs().max().item(),
                           "logit_std": reference.std().item(),
                           "same_top1": (fused.argmax(1) == reference.argmax(1)).float().mean().item()}
    items = [Timed(path, lambda path=path: forward(path, x), batch) for path in ("reference", "flex")]
    interleaved_rounds(items, dev, 5, min_block_s=0.2, max_warmup_s=10.0)
    ratio = time_ratio(items[1], items[0])
    peak_mib = {}
    if dev.type == "cuda":
        for item in items:
            torch.cuda.reset_peak_memory_stats(dev)
            item.call()
            peak_mib[item.name] = torch.cuda.max_memory_allocated(dev) / 2**20
    return {"spec": spec, "size": size, "res": res, "batch": batch,
            "ms_per_forward": {i.name: 1000 * statistics.median(i.seconds_per_call) for i in items},
            "flex_over_reference_time": ratio.median, "peak_mib": peak_mib, "agreement": agreement}


def decode_agreement(folder: Path, checkpoint: Path, name: str, res: int, crop_pct: float, n: int,
                     device: str = "cuda") -> dict:
    """The first ``n`` images of ``folder`` through the PIL path (pebench's CPU decode, timm's transform) and
    through ``--decode gpu``: pixel differences after the transform and the top-1 agreement of a timm model on
    both (normalised as pebench does)."""
    import timm
    from safetensors.torch import load_file

    from pebench.data import normalize
    from pebench.data.gpu_decode import GpuJpegFolder
    from pebench.data.imagefolder import ImageFolderData

    dev = torch.device(device)
    data = ImageFolderData.open(str(folder), crop_pct)
    positions = list(range(min(n, data.size("val"))))
    pil = data.read("val", res, positions)
    on_device = GpuJpegFolder(data)
    gpu = on_device.finish(on_device.read("val", res, positions), res, dev)
    difference = (gpu.images.cpu().int() - pil.images.int()).abs()
    net = timm.create_model(name, num_classes=load_file(str(checkpoint))["head.weight"].shape[0])
    net.load_state_dict(load_file(str(checkpoint)))
    net = net.eval().to(dev)
    agree = []
    with torch.inference_mode():
        for start in range(0, len(positions), 64):
            rows = slice(start, start + 64)
            a = net(normalize(pil.images[rows].to(dev))).argmax(1)
            b = net(normalize(gpu.images[rows])).argmax(1)
            agree.append((a == b).float().cpu())
    return {"images": len(positions), "pixel_mean_abs_diff": difference.float().mean().item(),
            "pixel_max_abs_diff": difference.max().item(),
            "pixels_differing_share": (difference > 0).float().mean().item(),
            "top1_agreement": torch.cat(agree).mean().item(), "model": f"{name} (random init, {checkpoint.name})"}
