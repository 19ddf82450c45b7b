"""What an encoding costs: parameters, FLOPs, throughput, latency and memory per resolution.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one image, with attention
forced onto SDPA's math backend so that its two matmuls are counted on every torch build (some CPU
builds count the fused kernel as 0). GMACs = FLOPs / 2, timm's convention. Counted: convolutions,
linear layers and every matmul/einsum, including an encoding's own (PEG convs, CPB/SP-ViT MLPs,
contextual iRPE products). Not counted: see ``NOT_COUNTED``.

Throughput follows hyperfine/timm's benchmark.py: warm-up, then timed blocks of several forward
passes with device synchronisation around each block; img/s is the median over blocks with its
inter-quartile range, and a spread above 10% of the median is flagged. On out-of-memory the batch
halves and the measurement restarts.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from pebench.encodings.base import Mode
from pebench.errors import PebenchError
from pebench.evaluate import is_out_of_memory

NOT_COUNTED = ["layer norms", "softmax", "GELU", "element-wise adds and multiplies (residuals, APE addition, "
               "RoPE rotation, attention biases)", "index gathers", "resampling of position tables/grids"]
NOISY_SPREAD = 0.10
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def param_counts(model: torch.nn.Module, res: int, mode: Mode) -> dict:
    """Total params, the encoding's stored params, and the position values it uses at ``res``."""
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "encoding": model.position_param_count(),
        "encoding_at_res": model.position_values_at(res, mode),
    }


def count_flops(model: torch.nn.Module, res: int, mode: Mode) -> int:
    """Forward FLOPs of one ``res`` x ``res`` image."""
    model.eval()
    x = torch.zeros(1, 3, res, res, device=next(model.parameters()).device)
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(x, mode)
    return counter.get_total_flops()


def analytic_vit_macs(dim: int, depth: int, patch: int, res: int, num_classes: int, prefix: int = 1,
                      mlp_ratio: float = 4.0, in_chans: int = 3) -> int:
    """Multiply-accumulates of a plain ViT forward (no encoding extras) on one image.

    Per block, with T tokens: qkv 3TD^2, projection TD^2, MLP 2*mlp_ratio*TD^2, and attention's
    q.k and attn.v products 2T^2D; plus the patch embedding and the classifier.
    """
    patches = (res // patch) ** 2
    tokens = patches + prefix
    per_block = (4 + 2 * mlp_ratio) * tokens * dim * dim + 2 * tokens * tokens * dim
    return int(depth * per_block + patches * dim * in_chans * patch * patch + dim * num_classes)


@dataclass
class Spread:
    """Median and inter-quartile range of repeated measurements."""

    median: float
    q1: float
    q3: float
    repeats: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if len(values) < 2:
            return cls(values[0], values[0], values[0], len(values))
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(statistics.median(values), q1, q3, len(values))

    @property
    def relative_iqr(self) -> float:
        return (self.q3 - self.q1) / self.median if self.median else 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_blocks(fn: Callable[[], object], device: torch.device, repeats: int, min_block_s: float,
                 warmup_s: float) -> list[float]:
    """Seconds per call, one value per timed block of calls, after a warm-up of at least two calls."""
    calls, started = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - started < warmup_s:
        fn()
        _sync(device)
        calls += 1
    per_call = (time.perf_counter() - started) / calls
    number = max(1, round(min_block_s / per_call)) if per_call > 0 else 1
    seconds = []
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection landing inside one block would only add noise
    try:
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            _sync(device)
            seconds.append((time.perf_counter() - t0) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    return seconds


class RssSampler:
    """Peak resident-set growth of this process while in the ``with`` block (CPU memory)."""

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = interval_s
        self.peak = self.baseline = 0
        self._stop = threading.Event()

    @staticmethod
    def rss_bytes() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss_bytes())
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.baseline = self.peak = self.rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class SpeedSettings:
    batch_size: int = 8
    device: torch.device = torch.device("cpu")
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    repeats: int = 7
    min_block_s: float = 0.2
    warmup_s: float = 0.5

    @property
    def dtype_label(self) -> str:
        return "fp32" if self.dtype == "fp32" else f"{self.dtype}-autocast"

    def autocast(self):
        if self.dtype == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.dtype])


def prepare(model: torch.nn.Module, settings: SpeedSettings) -> Callable:
    """The model moved to the device/layout of ``settings``, as a callable ``(x, mode)``."""
    model = model.eval().to(settings.device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if not settings.compile:
        return model
    try:
        return torch.compile(model)
    except Exception as error:  # noqa: BLE001 - any backend failure becomes one line for the user
        raise PebenchError(f"--compile failed on this machine ({type(error).__name__}: {error}); "
                           "run without --compile") from None


def _inputs(batch: int, res: int, settings: SpeedSettings) -> torch.Tensor:
    x = torch.randn(batch, 3, res, res, generator=torch.Generator().manual_seed(0)).to(settings.device)
    return x.contiguous(memory_format=torch.channels_last) if settings.channels_last else x


def measure_speed(forward: Callable, res: int, mode: Mode, settings: SpeedSettings) -> dict:
    """Throughput (median/IQR img/s), batch-1 latency and peak memory of ``forward(x, mode)``."""
    batch = settings.batch_size
    while True:
        try:
            return _measure_at_batch(forward, res, mode, settings, batch)
        except (torch.cuda.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error) or batch == 1:
                raise
        # outside the except block, whose traceback would pin the failed attempt's tensors
        batch //= 2
        if settings.device.type == "cuda":
            torch.cuda.empty_cache()


@torch.inference_mode()
def _measure_at_batch(forward: Callable, res: int, mode: Mode, settings: SpeedSettings, batch: int) -> dict:
    device = settings.device
    x = _inputs(batch, res, settings)
    with settings.autocast():
        if settings.compile:  # compile on a first call, so the memory probe sees a forward, not the compiler
            forward(x, mode)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            forward(x, mode)
            _sync(device)
            peak_bytes, memory_kind = torch.cuda.max_memory_allocated(device) - before, "cuda_max_allocated"
        else:
            with RssSampler() as rss:
                forward(x, mode)
            peak_bytes, memory_kind = rss.growth, "rss_growth"
        seconds = timed_blocks(lambda: forward(x, mode), device, settings.repeats, settings.min_block_s,
                               settings.warmup_s)
        one = x[:1]
        latency = timed_blocks(lambda: forward(one, mode), device, settings.repeats, settings.min_block_s / 4,
                               settings.warmup_s / 4)
    throughput = Spread.of([batch / s for s in seconds])
    latency_ms = Spread.of([1000 * s for s in latency])
    warnings = []
    if throughput.relative_iqr > NOISY_SPREAD:
        warnings.append(f"throughput IQR is {throughput.relative_iqr:.0%} of the median: the machine was busy "
                        "or the batch is too small; rerun or raise --batch-size")
    return {
        "img_per_s": throughput.median,
        "img_per_s_iqr": [throughput.q1, throughput.q3],
        "repeats": throughput.repeats,
        "batch_size": batch,
        "latency_ms": latency_ms.median,
        "latency_ms_iqr": [latency_ms.q1, latency_ms.q3],
        "peak_memory_mib": peak_bytes / 2**20,
        "memory_kind": memory_kind,
        "warnings": warnings,
    }


def _model_entry(model: torch.nn.Module, name: str, source: str, path, meta: dict | None) -> dict:
    return {"name": name, "source": source, "path": str(path) if path else None, "size": model.size,
            "encoding": str(model.spec), "train_res": model.img_size, "patch": model.patch,
            "checkpoint_sha256": meta.get("checkpoint_sha256") if meta else None}


def load_profile_entry(name: str, size: str | None) -> tuple[str, torch.nn.Module, dict | None, str, object]:
    """A profile row: a shipped name or checkpoint path (``size`` None), or an encoding spec built with
    random weights at ``size``. Costs do not depend on the weights, so a shipped model that is not built
    in this install is built from its spec with the zoo's training size and class count."""
    from pebench.data import parse_data
    from pebench.models import build_model
    from pebench.recipe import TrainConfig
    from pebench.zoo import ZOO, resolve_model, zoo_path

    if size is not None:
        return name, build_model(size, name, num_classes=1000), None, "built", None
    if name in ZOO and not zoo_path(name).exists():
        net = build_model(TrainConfig.size, ZOO[name], num_classes=parse_data(TrainConfig.data).num_classes)
        return name, net, None, "built", None
    net, meta, source, path = resolve_model(name)
    return name, net, meta, source, path


def profile_models(
    models: list[tuple[str, torch.nn.Module, dict | None, str, object]],
    resolutions: list[int],
    mode: Mode,
    settings: SpeedSettings,
    on_record: Callable[[dict], None],
) -> None:
    """Profile every (model, resolution) cell; each finished cell goes to ``on_record``.

    ``models`` holds (name, model, sidecar or None, source, path or None). At each resolution a
    ``none`` model of the same size is measured first, so each record carries its overhead vs
    ``none`` measured minutes apart on the same machine, not across runs.
    """
    from pebench.env import environment
    from pebench.results import SCHEMA_VERSION

    env = environment() | {"device_name": device_name(settings.device)}
    for res in resolutions:
        references: dict[tuple, dict] = {}
        for name, model, meta, source, path in models:
            key = (model.size, model.patch, model.num_classes, model.img_size)
            if key not in references:
                reference = model.position_free_twin()
                references[key] = {"speed": measure_speed(prepare(reference, settings), res, mode, settings),
                                   "flops": count_flops(reference, res, mode)}
            reference = references[key]
            record = {
                "schema_version": SCHEMA_VERSION,
                "kind": "profile",
                "model": _model_entry(model, name, source, path, meta),
                "res": res,
                "mode": mode,
                "same_as_native": bool(model.interp_is_native or res == model.img_size),
                "resize_api": model.resize_api(res, mode),
                "device": settings.device.type,
                "dtype": settings.dtype_label,
                "channels_last": settings.channels_last,
                "compiled": settings.compile,
                "env": env,
            }
            reason = model.applicability(res, mode)
            if reason:
                record |= {"status": "not_applicable", "reason": reason, "params": None, "flops": None,
                           "timing": None, "memory": None, "overhead_vs_none": None}
                on_record(record)
                continue
            if str(model.spec) == "none":  # the reference already measured this very architecture
                flops, speed = reference["flops"], reference["speed"]
            else:
                flops = count_flops(model, res, mode)
                speed = measure_speed(prepare(model, settings), res, mode, settings)
            ref_speed = reference["speed"]
            ref_memory = ref_speed["peak_memory_mib"]
            record |= {
                "status": "ok",
                "reason": None,
                "params": param_counts(model, res, mode),
                "flops": {"gmacs": flops / 2e9, "gflops": flops / 1e9,
                          "encoding_gmacs": (flops - reference["flops"]) / 2e9, "not_counted": NOT_COUNTED},
                "timing": {k: speed[k] for k in ("img_per_s", "img_per_s_iqr", "repeats", "batch_size",
                                                 "latency_ms", "latency_ms_iqr", "warnings")},
                "memory": {"peak_mib": speed["peak_memory_mib"], "kind": speed["memory_kind"]},
                "overhead_vs_none": {
                    "time": ref_speed["img_per_s"] / speed["img_per_s"],
                    "memory": speed["peak_memory_mib"] / ref_memory if ref_memory > 0 else None,
                },
            }
            on_record(record)
