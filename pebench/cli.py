"""The `pebench` command line: one-line errors with exit code 2 for bad input, never a traceback."""

from __future__ import annotations

import platform
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pebench import __version__
from pebench.encodings import PRESETS, REGISTRY
from pebench.errors import PebenchError
from pebench.models import SIZES
from pebench.models.vit import check_resolution
from pebench.train import TrainConfig
from pebench.train import train as train_model

app = typer.Typer(
    help="Benchmark how ViT position encodings trained at 224 px hold up at 384, 448 and 512 px.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


class Listing(str, Enum):
    encodings = "encodings"
    models = "models"
    sizes = "sizes"


def _options_text(cls) -> str:
    items = []
    for key, opt in cls.options.items():
        default = str(opt.default).lower() if isinstance(opt.default, bool) else opt.default
        choices = f" ({'|'.join(str(c) for c in opt.choices)})" if opt.choices else ""
        items.append(f"{key}={default}{choices}")
    return ", ".join(items) or "none"


def _print_encodings() -> None:
    console.print("[bold]Position encodings[/] (spec: name[:key=value,...]; combine with '+', e.g. ape+peg)\n")
    for name, cls in REGISTRY.items():
        console.print(f"[bold cyan]{name}[/]  {cls.summary}", highlight=False)
        for label, text in (("paper", cls.paper), ("options", _options_text(cls)),
                            ("native", cls.native_means), ("interp", cls.interp_means)):
            console.print(f"    {label:8}{text}", highlight=False, markup=False)
        console.print()


def _presets_table() -> Table:
    table = Table(title="Presets")
    table.add_column("name")
    table.add_column("same as")
    for name, (family, opts) in PRESETS.items():
        table.add_row(name, family + ":" + ",".join(f"{k}={v}" for k, v in opts.items()))
    return table


def _models_table() -> Table:
    from pebench.checkpoint import read_sidecar
    from pebench.zoo import ZOO, zoo_path

    table = Table(title="Shipped models (micro ViT trained by pebench on synthetic at 224)")
    for column in ("name", "encoding", "val top-1 at 224", "samples seen"):
        table.add_column(column)
    for name, spec in ZOO.items():
        path = zoo_path(name)
        if not path.exists():
            table.add_row(name, spec, "[dim]not built: pebench train --all[/]", "")
            continue
        meta = read_sidecar(path)
        curve = meta.get("learning_curve") or [{}]
        table.add_row(name, meta["encoding"], f"{100 * meta['val_top1']:.1f}% (n={meta['data']})",
                      str(curve[-1].get("samples", "")))
    return table


def _sizes_table() -> Table:
    table = Table(title="Backbone sizes (patch 16, trained at 224 unless told otherwise)")
    for column in ("size", "dim", "depth", "heads"):
        table.add_column(column)
    for name, s in SIZES.items():
        table.add_row(name, str(s.dim), str(s.depth), str(s.num_heads))
    return table


@app.command("list")
def list_(
    what: Annotated[Listing | None, typer.Argument(help="what to list; everything when omitted")] = None,
) -> None:
    """List position encodings (with options, modes and papers), shipped models and backbone sizes."""
    if what in (None, Listing.encodings):
        _print_encodings()
        console.print(_presets_table())
    if what in (None, Listing.models):
        console.print(_models_table())
    if what in (None, Listing.sizes):
        console.print(_sizes_table())


@app.command()
def train(
    encoding: Annotated[str, typer.Option("--encoding", "-e", help="encoding spec, e.g. 'peg:blocks=0-4'")] = "ape",
    out: Annotated[Path, typer.Option(help="safetensors checkpoint to write (sidecar: same name, .json)")] = Path(
        "model.safetensors"),
    size: Annotated[str, typer.Option(help="backbone size: micro, tiny, small, base")] = "micro",
    data: Annotated[str, typer.Option(help="dataset spec")] = "synthetic",
    epochs: Annotated[int, typer.Option(min=1)] = TrainConfig.epochs,
    batch_size: Annotated[int, typer.Option(min=1)] = TrainConfig.batch_size,
    lr: Annotated[float, typer.Option(min=0)] = TrainConfig.lr,
    seed: Annotated[int, typer.Option()] = TrainConfig.seed,
    all_: Annotated[bool, typer.Option("--all", help="(re)build every shipped model that is missing, "
                                                     "into the package's zoo folder")] = False,
) -> None:
    """Train a ViT at 224 on a dataset; rerun the same command to resume an interrupted run."""
    import torch

    from pebench.zoo import ZOO, zoo_path

    command = shlex.join(["pebench", *sys.argv[1:]])
    jobs = [(spec, zoo_path(name)) for name, spec in ZOO.items()] if all_ else [(encoding, out)]
    for spec, path in jobs:
        if all_ and path.exists():
            console.print(f"{path.name} exists; skipping (delete it to retrain)")
            continue
        cfg = TrainConfig(size=size, encoding=spec, data=data, epochs=epochs, batch_size=batch_size, lr=lr,
                          seed=seed)
        sidecar = train_model(cfg, path, command=command, console=console,
                              save_dtype=torch.float16 if all_ else torch.float32)
        console.print(f"wrote {path} (val top-1 {sidecar['val_top1']:.3f})")


class ModeChoice(str, Enum):
    native = "native"
    interp = "interp"
    both = "both"


def _check_resolutions(resolutions: list[int], patch: int) -> None:
    for r in resolutions:
        check_resolution(r, r, patch, what=f"--res {r}")


def _parse_device(device: str):
    import torch

    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise PebenchError(f"unknown device '{device}'; use cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PebenchError(f"device '{device}' asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(device)


def _parse_crop_pct(text: str) -> dict[int, float] | float:
    def fraction(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not 0 < number <= 1:
            raise PebenchError(f"--crop-pct value '{value}' must be a fraction in (0, 1], e.g. 0.875")
        return number

    if "=" not in text:
        return fraction(text)
    per_res = {}
    for item in text.split(","):
        res, _, value = item.partition("=")
        if not res.strip().isdigit():
            raise PebenchError(f"--crop-pct item '{item}' should look like 384=1.0")
        per_res[int(res)] = fraction(value)
    return per_res


@app.command("eval")
def eval_(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="shipped name or .safetensors path; "
                                                     "repeat for several (default: every shipped model)")] = None,
    res: Annotated[list[int] | None, typer.Option(help="resolution in px; repeat (default 224 384 448 512)")] = None,
    mode: Annotated[ModeChoice, typer.Option(help="native, interp or both")] = ModeChoice.both,
    data: Annotated[str, typer.Option(help="dataset spec")] = "synthetic",
    n: Annotated[int | None, typer.Option(help="evaluate the first N validation images (default: all)")] = None,
    batch_size: Annotated[int, typer.Option(help="batch size (halved automatically on out-of-memory)")] = 64,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    out: Annotated[Path | None, typer.Option(help="append JSON-lines records here")] = None,
    crop_pct: Annotated[str, typer.Option(help="image folders: centre-crop fraction, one value or per "
                                               "resolution, e.g. '224=0.875,384=1.0'")] = "0.875",
) -> None:
    """Top-1/top-5 accuracy of models at resolutions, natively and with interpolation."""
    from rich.progress import Progress

    from pebench.data import parse_data
    from pebench.evaluate import evaluate_models
    from pebench.report import eval_table
    from pebench.results import append_record
    from pebench.zoo import ZOO, resolve_model

    resolutions = res or [224, 384, 448, 512]
    if n is not None and n <= 0:
        raise PebenchError(f"--n must be a positive number of images, got {n}")
    if batch_size <= 0:
        raise PebenchError(f"--batch-size must be positive, got {batch_size}")
    dataset = parse_data(data, _parse_crop_pct(crop_pct))
    torch_device = _parse_device(device)
    names = model or list(ZOO)
    loaded = []
    for name in names:
        net, meta, source, path = resolve_model(name)
        _check_resolutions(resolutions, meta["patch"])
        loaded.append((name, net, meta, source, path))
    modes = ["native", "interp"] if mode is ModeChoice.both else [mode.value]
    n_images = min(n, dataset.size("val")) if n else dataset.size("val")
    records: list[dict] = []

    def keep(record: dict) -> None:
        records.append(record)
        if out is not None:
            append_record(out, record)

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("evaluating", total=n_images * len(loaded) * len(resolutions) * len(modes))
        evaluate_models(loaded, dataset, resolutions, modes, n, batch_size, torch_device, keep,
                        on_batch=lambda k: progress.advance(task, k))
    console.print(eval_table(records))
    for skipped in getattr(dataset, "skipped", []):
        console.print(f"[yellow]skipped unreadable file[/] {skipped}")
    if out is not None:
        console.print(f"{len(records)} records appended to {out}")


class DtypeChoice(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@app.command()
def profile(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="shipped name or .safetensors path; "
                                                     "repeat for several")] = None,
    size: Annotated[str, typer.Option(help="backbone size for --encoding rows: micro, tiny, small, base")] = "micro",
    encoding: Annotated[list[str] | None, typer.Option("--encoding", "-e", help="encoding spec built with random "
                                                        "weights at --size; repeat (default with no --model: "
                                                        "every shipped model's encoding)")] = None,
    res: Annotated[list[int] | None, typer.Option(help="resolution in px; repeat (default 224 384 448 512)")] = None,
    mode: Annotated[ModeChoice, typer.Option(help="native or interp")] = ModeChoice.interp,
    batch_size: Annotated[int, typer.Option(help="batch size (halved automatically on out-of-memory)")] = 8,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    dtype: Annotated[DtypeChoice, typer.Option(help="fp32, or bf16/fp16 autocast")] = DtypeChoice.fp32,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="channels-last memory format")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="run the model through torch.compile")] = False,
    repeats: Annotated[int, typer.Option(help="timed blocks per measurement (median and IQR over them)")] = 7,
    out: Annotated[Path | None, typer.Option(help="append JSON-lines records here")] = None,
) -> None:
    """Params, FLOPs (GMACs), throughput, latency and memory per encoding and resolution, vs `none`."""
    from pebench.data import parse_data
    from pebench.models import build_model
    from pebench.profile import SpeedSettings, profile_models
    from pebench.report import profile_table
    from pebench.results import append_record
    from pebench.zoo import ZOO, resolve_model, zoo_path

    if mode is ModeChoice.both:
        raise PebenchError("profile measures one mode at a time; use --mode native or --mode interp")
    if size not in SIZES:
        raise PebenchError(f"unknown model size '{size}'; choose one of: {', '.join(SIZES)}")
    if batch_size <= 0 or repeats <= 0:
        raise PebenchError("--batch-size and --repeats must be positive")
    resolutions = res or [224, 384, 448, 512]
    settings = SpeedSettings(batch_size=batch_size, device=_parse_device(device), dtype=dtype.value,
                             channels_last=channels_last, compile=compile_, repeats=repeats)
    if settings.device.type == "cpu" and dtype is DtypeChoice.fp16:
        raise PebenchError("fp16 autocast is for CUDA; on CPU use --dtype bf16 or fp32")
    entries = []
    for name in model or []:
        if name in ZOO and not zoo_path(name).exists():  # costs do not depend on the weights
            net = build_model(TrainConfig.size, ZOO[name], num_classes=parse_data(TrainConfig.data).num_classes)
            entries.append((name, net, None, "built", None))
        else:
            net, meta, source, path = resolve_model(name)
            entries.append((name, net, meta, source, path))
    specs = encoding if encoding is not None else ([] if model else list(dict.fromkeys(ZOO.values())))
    for spec in specs:
        entries.append((spec, build_model(size, spec, num_classes=1000), None, "built", None))
    for _, net, *_ in entries:
        _check_resolutions(resolutions, net.patch)
    records: list[dict] = []

    def keep(record: dict) -> None:
        records.append(record)
        if out is not None:
            append_record(out, record)

    with console.status("profiling") as status:
        def progress(record: dict) -> None:
            keep(record)
            status.update(f"profiling: {len(records)}/{len(entries) * len(resolutions)} cells done, "
                          f"last {record['model']['name']} at {record['res']}")

        profile_models(entries, resolutions, mode.value, settings, progress)
    console.print(profile_table(records))
    for record in records:
        for warning in (record["timing"] or {}).get("warnings", []):
            console.print(f"[yellow]warning[/] {record['model']['name']} at {record['res']}: {warning}")
    if out is not None:
        console.print(f"{len(records)} records appended to {out}")


@app.command()
def version() -> None:
    """Print pebench's version and the versions it runs with."""
    import timm
    import torch

    console.print(
        f"pebench {__version__}  torch {torch.__version__}  timm {timm.__version__}  "
        f"python {platform.python_version()}"
    )


def main() -> None:
    """Entry point; typer reports usage errors itself (exit 2), pebench's own bad-input errors go here."""
    try:
        app()
    except PebenchError as error:
        Console(stderr=True).print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
