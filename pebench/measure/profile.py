"""What an encoding costs: parameters, FLOPs, throughput, latency and memory per resolution.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one image, with attention
forced onto SDPA's math backend so that its two matmuls are counted on every torch build (some CPU
builds count the fused kernel as 0). GMACs = FLOPs / 2, timm's convention. Counted: convolutions,
linear layers and every matmul/einsum, including an encoding's own (PEG convs, CPB/SP-ViT MLPs,
contextual iRPE products). Not counted: see ``NOT_COUNTED``.

Throughput and batch-1 latency of every model of one resolution and of its position-free twin
(the `none` reference) are measured together in interleaved rounds (:mod:`pebench.measure.speed`): img/s
is the median over rounds, the overhead vs `none` the median of per-round time ratios, and a
reference that drifts by more than 10% during the run flags the machine as busy. Memory is the
peak of bytes allocated by one forward pass. On out-of-memory a model's batch halves. Where the time of
pebench's own models goes (position terms, attention, the rest) is measured after the rounds
(:mod:`pebench.measure.breakdown`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from pebench.encodings.base import Mode
from pebench.env import device_name, environment
from pebench.errors import PebenchError
from pebench.measure.breakdown import breakdown
from pebench.measure.evaluate import is_out_of_memory
from pebench.measure.speed import (
    DRIFT_LIMIT,
    NOISY_SPREAD,
    Spread,
    Timed,
    drift,
    interleaved_rounds,
    peak_forward_bytes,
    time_ratio,
)
from pebench.models.interface import LoadedModel
from pebench.resolution import Label, as_hw
from pebench.results import header

NOT_COUNTED = ["layer norms", "softmax", "GELU", "element-wise adds and multiplies (residuals, APE addition, "
               "RoPE rotation, attention biases)", "index gathers", "resampling of position tables/grids"]
#: the torch dtype of each of pebench.settings.DTYPES (None: no autocast)
AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def param_counts(model: torch.nn.Module, res: Label, mode: Mode) -> dict:
    """Total params, the encoding's stored params, and the position values it uses at ``res``."""
    return {
        "total": sum(p.numel() for p in model.parameters()),
        "encoding": model.position_param_count(),
        "encoding_at_res": model.position_values_at(res, mode),
    }


def count_flops(model: torch.nn.Module, res: Label, mode: Mode) -> int:
    """Forward FLOPs of one image at ``res`` (a label: 384 or "384x512"), counted on the reference attention
    path: FlexAttention computes the same products in a kernel the counter cannot see into."""
    model.eval()
    x = torch.zeros(1, 3, *as_hw(res), device=next(model.parameters()).device)
    path = getattr(model, "attention_path", None)
    if path is not None:
        model.attention_path = "reference"
    try:
        with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(x, mode)
    finally:
        if path is not None:
            model.attention_path = path
    return counter.get_total_flops()


def analytic_vit_macs(dim: int, depth: int, patch: int, res, num_classes: int, prefix: int = 1,
                      mlp_ratio: float = 4.0, in_chans: int = 3) -> int:
    """Multiply-accumulates of a plain ViT forward (no encoding extras) on one image.

    Per block, with T tokens: qkv 3TD^2, projection TD^2, MLP 2*mlp_ratio*TD^2, and attention's
    q.k and attn.v products 2T^2D; plus the patch embedding and the classifier.
    """
    height, width = as_hw(res)
    patches = (height // patch) * (width // patch)
    tokens = patches + prefix
    per_block = (4 + 2 * mlp_ratio) * tokens * dim * dim + 2 * tokens * tokens * dim
    return int(depth * per_block + patches * dim * in_chans * patch * patch + dim * num_classes)


@dataclass
class SpeedSettings:
    batch_size: int = 8
    device: torch.device = torch.device("cpu")
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    repeats: int = 15  # interleaved rounds
    min_block_s: float = 0.1  # short blocks, many rounds: a busy machine's swings fall within a round
    warmup_s: float = 2.0  # at most, per model: warm-up ends once two blocks agree

    @property
    def dtype_label(self) -> str:
        return "fp32" if self.dtype == "fp32" else f"{self.dtype}-autocast"

    def autocast(self):
        if self.dtype == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.dtype])


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


def _inputs(batch: int, res: Label, settings: SpeedSettings) -> torch.Tensor:
    x = torch.randn(batch, 3, *as_hw(res), generator=torch.Generator().manual_seed(0)).to(settings.device)
    return x.contiguous(memory_format=torch.channels_last) if settings.channels_last else x


def _runnable(name: str, forward: Callable, res: Label, mode: Mode, settings: SpeedSettings) -> tuple[Timed, dict]:
    """A :class:`Timed` forward at the largest batch (from ``settings``, halving) that fits in memory,
    and the peak memory of that forward."""
    batch = settings.batch_size
    while True:
        x = _inputs(batch, res, settings)

        def call(x=x):
            with settings.autocast():
                return forward(x, mode)

        try:
            call()  # the first call compiles (torch.compile) and initialises; the memory probe sees a forward
            peak, kind = peak_forward_bytes(call, settings.device)
            return Timed(name, call, batch), {"peak_mib": peak / 2**20, "kind": kind}
        except (torch.cuda.OutOfMemoryError, RuntimeError) as error:
            if not is_out_of_memory(error) or batch == 1:
                raise
        del x, call  # outside the except block, whose traceback would pin the failed attempt's tensors
        batch //= 2
        if settings.device.type == "cuda":
            torch.cuda.empty_cache()


@torch.inference_mode()
def measure(rows: dict[str, Callable], res: Label, mode: Mode, settings: SpeedSettings,
            on_progress: Callable[[int, int], None] | None = None) -> dict[str, dict]:
    """Throughput, batch-1 latency and memory of every forward in ``rows``, timed in interleaved rounds;
    ``on_progress(done, total)`` is told after each row's memory is measured and after each round.

    Returns name -> {"speed": Timed, "latency": Timed, "memory": {...}}; ratios between rows are
    fair whatever their order (see :mod:`pebench.measure.speed`)."""
    total, done = len(rows) + 2 * settings.repeats, 0

    def step() -> None:
        nonlocal done
        done += 1
        if on_progress:
            on_progress(done, total)

    measured = {}
    for name, forward in rows.items():
        speed, memory = _runnable(name, forward, res, mode, settings)
        one = _inputs(1, res, settings)

        def single(forward=forward, one=one):
            with settings.autocast():
                return forward(one, mode)

        measured[name] = {"speed": speed, "latency": Timed(name, single, 1), "memory": memory}
        step()
    device = settings.device
    interleaved_rounds([m["speed"] for m in measured.values()], device, settings.repeats, settings.min_block_s,
                       settings.warmup_s, step)
    interleaved_rounds([m["latency"] for m in measured.values()], device, settings.repeats,
                       settings.min_block_s / 4, settings.warmup_s / 4, step)
    return measured


def _timing(speed: Timed, latency: Timed, reference: Timed | None) -> dict:
    throughput = speed.img_per_s
    latency_ms = Spread.of([1000 * s for s in latency.seconds_per_call])
    moved = drift(reference) if reference is not None else None
    warnings = []
    if throughput.relative_iqr > NOISY_SPREAD:
        warnings.append(f"throughput varied between rounds by more than {NOISY_SPREAD:.0%} (IQR over median): the "
                        "machine was busy or the batch is too small; rerun or raise --batch-size")
    if moved is not None and abs(moved) > DRIFT_LIMIT:
        warnings.append(f"the `none` reference ran {abs(moved):.0%} {'slower' if moved > 0 else 'faster'} at the "
                        "end of the run than at its start: the machine was busy; rerun on a quiet machine")
    return {"img_per_s": throughput.median, "img_per_s_iqr": [throughput.q1, throughput.q3],
            "img_per_s_mean": throughput.mean, "repeats": throughput.repeats, "batch_size": speed.batch,
            "calls_per_block": speed.calls_per_block, "latency_ms": latency_ms.median,
            "latency_ms_iqr": [latency_ms.q1, latency_ms.q3], "reference_drift": moved, "warnings": warnings}


def profile_models(models: list[LoadedModel], resolutions: list[Label], mode: Mode, settings: SpeedSettings,
                   on_record: Callable[[dict], None],
                   on_progress: Callable[[Label, int, int], None] | None = None) -> None:
    """Profile every (model, resolution) cell; the records of a resolution go to ``on_record`` in
    ``models`` order once they are all measured, and ``on_progress(res, done, total)`` hears of each
    step of its measurement (:func:`measure`).

    At each resolution every runnable model and a ``none`` twin per architecture are timed together in
    interleaved rounds, so each overhead vs ``none`` compares blocks measured seconds apart, in rotating
    order. A model whose architecture has no twin (:meth:`position_free_twin` gives None) is timed alone:
    its record has no ratio to ``none``.
    """
    env = environment() | {"device_name": device_name(settings.device)}
    run_settings = {"mode": mode, "batch_size": settings.batch_size, "dtype": settings.dtype_label,
                    "threads": torch.get_num_threads(), "device": str(settings.device),
                    "device_name": env["device_name"], "channels_last": settings.channels_last,
                    "compiled": settings.compile, "rounds": settings.repeats}

    def architecture(net) -> tuple:
        return (net.size, net.patch, net.num_classes, net.img_size)

    for res in resolutions:
        twins: dict[tuple, str | None] = {}  # architecture -> the name its `none` twin is timed under
        forwards: dict[str, Callable] = {}
        flops: dict[str, int] = {}
        runnable = []
        for loaded in models:
            net = loaded.net
            if net.applicability(res, mode):
                continue
            if architecture(net) not in twins:
                twin = net.position_free_twin()
                twins[architecture(net)] = None if twin is None else f"none twin {len(twins)}"
                if twin is not None:
                    forwards[twins[architecture(net)]] = prepare(twin, settings)
                    flops[twins[architecture(net)]] = count_flops(twin, res, mode)
            if str(net.spec) != "none" or twins[architecture(net)] is None:  # a `none` row is its own twin
                forwards[loaded.name], flops[loaded.name] = prepare(net, settings), count_flops(net, res, mode)
            runnable.append(loaded.name)
        progress = (lambda done, total, res=res: on_progress(res, done, total)) if on_progress else None
        measured = measure(forwards, res, mode, settings, progress) if forwards else {}
        for loaded in models:
            net = loaded.net
            record = header("profile", loaded, res, mode, settings.device.type, env) | {
                "dtype": settings.dtype_label, "channels_last": settings.channels_last,
                "compiled": settings.compile, "settings": run_settings}
            if loaded.name not in runnable:
                on_record(record | {"status": "not_applicable", "reason": net.applicability(res, mode),
                                    "params": None, "flops": None, "timing": None, "breakdown": None,
                                    "memory": None, "overhead_vs_none": None})
                continue
            twin = twins[architecture(net)]
            own = twin if str(net.spec) == "none" and twin else loaded.name
            mine, reference = measured[own], measured.get(twin)
            on_record(record | {
                "status": "ok",
                "reason": None,
                "params": param_counts(net, res, mode),
                "flops": {"gmacs": flops[own] / 2e9, "gflops": flops[own] / 1e9,
                          "encoding_gmacs": None if twin is None else (flops[own] - flops[twin]) / 2e9,
                          "not_counted": NOT_COUNTED},
                "timing": _timing(mine["speed"], mine["latency"], reference and reference["speed"]),
                "breakdown": breakdown(net, _inputs(mine["speed"].batch, res, settings), mode, settings.autocast),
                "memory": mine["memory"],
                "overhead_vs_none": None if reference is None else _overhead(mine, reference),
            })


def _overhead(mine: dict, reference: dict) -> dict:
    ratio = time_ratio(mine["speed"], reference["speed"])
    ref_memory = reference["memory"]["peak_mib"]
    return {"time": ratio.median, "time_iqr": [ratio.q1, ratio.q3],
            "memory": mine["memory"]["peak_mib"] / ref_memory if ref_memory > 0 else None}
