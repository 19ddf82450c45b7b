"""The `pebench` command line: one-line errors with exit code 2 for bad input, never a traceback."""

from __future__ import annotations

import platform
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pebench import __version__
from pebench.cli.options import (
    BatchOption,
    CacheOption,
    CheckpointOption,
    CropOption,
    DataOption,
    DeviceOption,
    ModelOption,
    NOption,
    OutOption,
    ResOption,
    WorkersOption,
    attach_checkpoint,
    check_resolutions,
    parse_cache,
    parse_crop_pct,
    parse_device,
    parse_modes,
    parse_resolutions,
    parse_scales,
)
from pebench.cli.records import check, report
from pebench.cli.training import finetune, train
from pebench.errors import PebenchError
from pebench.cli.listing import models_table, presets_table, print_encodings, sizes_table, timm_table
from pebench.models.sizes import SIZES
from pebench.modes import FIXED, TUNED, parse_mode
from pebench.reports.summaries import print_data_problems, print_passes, print_tuning

app = typer.Typer(
    help="Benchmark how ViT position encodings trained at 224 px hold up at 384 to 1024 px.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


class Listing(str, Enum):
    encodings = "encodings"
    models = "models"
    sizes = "sizes"


@app.command("list")
def list_(
    what: Annotated[Listing | None, typer.Argument(help="what to list; everything when omitted")] = None,
) -> None:
    """List position encodings (with options, modes and papers), shipped models and backbone sizes."""
    if what in (None, Listing.encodings):
        print_encodings(console)
        console.print(presets_table())
    if what in (None, Listing.models):
        console.print(models_table())
        console.print(timm_table())
    if what in (None, Listing.sizes):
        console.print(sizes_table())


app.command()(train)
app.command()(finetune)


def _live(header: str):
    """The live terminal on rank 0; other torchrun ranks stay quiet."""
    import os

    from pebench.cli.live import LiveRun
    from pebench.runner.runner import Observer

    if os.environ.get("RANK", "0") != "0":
        from contextlib import nullcontext

        return nullcontext(Observer())
    return LiveRun(console, header)


def _records_of(records: list[dict], out: Path | None, keys: set[str]) -> list[dict]:
    """This command's records: the new ones, or with --out every finished one (a resumed run's too)."""
    from pebench.results import read_records

    if out is None or not out.exists():
        return records
    return list({r["key"]: r for r in read_records(out) if r.get("key") in keys}.values())


def _evaluate(model, res, modes: tuple[str, ...], data, n, batch_size, device, workers, cache, out, crop_pct,
              checkpoint, tuning: dict | None = None, diagnostics: dict | None = None) -> list[dict]:
    """`pebench eval`, `tune` and (with ``diagnostics``, its suite settings) `inspect`: a one-row suite
    through the cell runner; prints the table."""
    from pebench.data import parse_data
    from pebench.reports.tables import eval_table
    from pebench.runner.runner import check_models, run_cells
    from pebench.runner.suite import Suite, expand
    from pebench.zoo import ZOO, zoo_path

    if n is not None and n <= 0:
        raise PebenchError(f"--n must be a positive number of images, got {n}")
    if batch_size <= 0:
        raise PebenchError(f"--batch-size must be positive, got {batch_size}")
    if workers is not None and workers < 0:
        raise PebenchError(f"--workers must be 0 (in-process) or more, got {workers}")
    resolutions = parse_resolutions(res)
    crop = parse_crop_pct(crop_pct)
    dataset = parse_data(data, crop)
    torch_device = parse_device(device)
    names = attach_checkpoint(model, checkpoint) or [name for name in ZOO if zoo_path(name).exists()]
    if not names:
        raise PebenchError("no shipped model is built in this install; pass --model PATH or build the zoo with "
                           "`pebench train --all`")
    if not model and len(names) < len(ZOO):
        console.print(f"[yellow]not built, skipped:[/] {', '.join(n for n in ZOO if n not in names)}")
    suite = Suite(name="eval", models=tuple(names), resolutions=resolutions, modes=modes, data=data, n=n,
                  crop_pct=crop, batch_size=batch_size, device=device, workers=workers, cache=parse_cache(cache),
                  **(tuning or {}), **(diagnostics or {}))
    count = min(n or dataset.size("val"), dataset.size("val"))
    if TUNED in modes and suite.tune_n >= count:
        raise PebenchError(f"--tune-n {suite.tune_n} leaves no image to score out of {count}; lower --tune-n or "
                           "raise --n")
    models = check_models(suite, torch_device, option="--res")
    cells = [c for c in expand(suite) if (c.kind == "diagnostics") == bool(diagnostics)]
    keys = {c.key for c in cells}
    if diagnostics:
        count = min(suite.diagnostics_n, dataset.size("val"))
    scored = f"n={count - suite.tune_n:,} after {suite.tune_n} held out to tune S" if TUNED in modes else f"n={count:,}"
    with _live(f"{dataset.spec} (val, {scored}) on {torch_device}") as live:
        records = run_cells(suite, cells, keys, out, torch_device, live, strict=False, models=models, data=dataset)
    records = _records_of(records, out, keys)
    if diagnostics:
        from pebench.reports.diagnostics import diagnostics_table

        console.print(diagnostics_table(records, f"{dataset.spec}, val split, {scored}"))
        if out is not None:
            console.print(f"{len(records)} records in {out}; `pebench report {out}` draws the maps")
        return records
    console.print(eval_table(records, f"{dataset.spec}, val split, {scored}"))
    print_passes(console, records)
    print_data_problems(console, records)
    if out is not None:
        console.print(f"{len(records)} records in {out}")
    return records


@app.command("eval")
def eval_(
    model: ModelOption = None,
    res: ResOption = None,
    mode: Annotated[list[str] | None, typer.Option(help="native, interp, both (native and interp), tuned, or "
                                                        "scale=S (positions times S); repeat (default both)")] = None,
    data: DataOption = "synthetic",
    n: NOption = None,
    batch_size: BatchOption = 64,
    device: DeviceOption = "cpu",
    workers: WorkersOption = None,
    cache: CacheOption = None,
    out: OutOption = None,
    crop_pct: CropOption = "0.875",
    checkpoint: CheckpointOption = None,
) -> None:
    """Top-1/top-5 accuracy of models at resolutions, natively, interpolated or with a position scale."""
    _evaluate(model, res, parse_modes(mode), data, n, batch_size, device, workers, cache, out, crop_pct, checkpoint)


@app.command()
def tune(
    model: ModelOption = None,
    res: ResOption = None,
    data: DataOption = "synthetic",
    n: NOption = None,
    tune_n: Annotated[int, typer.Option(help="the first N images choose S (held out: no cell is scored on them)")
                      ] = 200,
    scales: Annotated[str | None, typer.Option(help="comma-separated S to try, e.g. 0.25,0.5,1 (default: --points "
                                                    "log-spaced around interp's G0/G, plus 1 and G0/G)")] = None,
    points: Annotated[int, typer.Option(help="how many automatic S to try")] = 9,
    batch_size: BatchOption = 64,
    device: DeviceOption = "cpu",
    workers: WorkersOption = None,
    cache: CacheOption = None,
    out: OutOption = None,
    crop_pct: CropOption = "0.875",
    checkpoint: CheckpointOption = None,
) -> None:
    """Choose each model's position scale S per resolution on held-out images; native, interp and tuned side by
    side, all scored on the remaining images."""
    if tune_n <= 0 or points <= 0:
        raise PebenchError("--tune-n and --points must be positive")
    tuning = {"tune_n": tune_n, "tune_points": points, "tune_scales": parse_scales(scales)}
    records = _evaluate(model, res, (*FIXED, TUNED), data, n, batch_size, device, workers, cache, out, crop_pct,
                        checkpoint, tuning)
    print_tuning(console, records)


@app.command()
def inspect(
    model: ModelOption = None,
    res: ResOption = None,
    mode: Annotated[list[str] | None, typer.Option(help="native, interp, both, or scale=S; repeat (default both)")
                    ] = None,
    data: DataOption = "synthetic",
    n: Annotated[int, typer.Option(help="images the statistics are computed on (the first of the val split)")] = 64,
    maps: Annotated[int, typer.Option(help="images whose class-token attention map is kept")] = 4,
    batch_size: BatchOption = 16,
    device: DeviceOption = "cpu",
    workers: WorkersOption = None,
    cache: CacheOption = None,
    out: OutOption = None,
    crop_pct: CropOption = "0.875",
) -> None:
    """Why accuracy moves: per block attention distance, entropy and class-token share; position-embedding
    similarity and attention-bias maps; class-token attention maps (records of kind diagnostics)."""
    if n <= 0 or maps < 0:
        raise PebenchError("--n must be a positive number of images and --maps 0 or more")
    modes = parse_modes(mode)
    if TUNED in modes:
        raise PebenchError("inspect runs fixed modes; use native, interp or scale=S (tune first to find S)")
    _evaluate(model, res, modes, data, None, batch_size, device, workers, cache, out, crop_pct, None,
              diagnostics={"diagnostics": True, "diagnostics_n": n, "diagnostics_maps": maps})


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
    res: ResOption = None,
    mode: Annotated[str, typer.Option(help="native, interp or scale=S")] = "interp",
    batch_size: Annotated[int, typer.Option(help="batch size (halved automatically on out-of-memory)")] = 8,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    dtype: Annotated[DtypeChoice, typer.Option(help="fp32, or bf16/fp16 autocast")] = DtypeChoice.fp32,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="channels-last memory format")] = False,
    compile_: Annotated[bool, typer.Option("--compile", help="run the model through torch.compile")] = False,
    repeats: Annotated[int, typer.Option(help="interleaved rounds: each times one block of every model and of "
                                              "`none` (medians and IQRs are over rounds)")] = 15,
    out: Annotated[Path | None, typer.Option(help="append JSON-lines records here; rerun to resume")] = None,
    checkpoint: Annotated[Path | None, typer.Option(help="weights for the one --model timm:NAME "
                                                         "(.safetensors, .pth, .bin)")] = None,
) -> None:
    """Params, FLOPs (GMACs), throughput, latency and memory per encoding and resolution, vs `none`."""
    from pebench.reports.tables import profile_table
    from pebench.runner.runner import run_cells
    from pebench.runner.suite import Suite, expand
    from pebench.zoo import ZOO

    if mode.strip().lower() == "both":
        raise PebenchError("profile measures one mode at a time; use --mode native, interp or scale=S")
    mode = parse_mode(mode, what="--mode")
    if mode == TUNED:
        raise PebenchError("profile measures a fixed mode; use --mode native, interp or scale=S (a tuned S costs "
                           "what that scale=S costs)")
    if size not in SIZES:
        raise PebenchError(f"unknown model size '{size}'; choose one of: {', '.join(SIZES)}")
    if batch_size <= 0 or repeats <= 0:
        raise PebenchError("--batch-size and --repeats must be positive")
    torch_device = parse_device(device)
    if torch_device.type == "cpu" and dtype is DtypeChoice.fp16:
        raise PebenchError("fp16 autocast is for CUDA; on CPU use --dtype bf16 or fp32")
    names = attach_checkpoint(model, checkpoint) or []
    specs = encoding if encoding is not None else ([] if model else list(dict.fromkeys(ZOO.values())))
    suite = Suite(name="profile", models=tuple(names), profile_encodings=tuple(specs), profile_size=size,
                  resolutions=parse_resolutions(res), modes=(mode,), device=device, profile=True,
                  profile_mode=mode, profile_batch_size=batch_size, profile_dtype=dtype.value,
                  profile_repeats=repeats, profile_channels_last=channels_last, profile_compile=compile_)
    rows = _profile_rows(suite)
    cells = [c for c in expand(suite) if c.kind == "profile"]
    keys = {c.key for c in cells}
    with _live(f"profile on {torch_device}") as live:
        records = run_cells(suite, cells, keys, out, torch_device, live, strict=False, profile_rows=rows)
    records = _records_of(records, out, keys)
    console.print(profile_table(records))
    warned: dict[tuple[int, str], list[str]] = {}
    for record in records:
        for warning in (record["timing"] or {}).get("warnings", []):
            warned.setdefault((record["res"], warning), []).append(record["model"]["name"])
    for (res, warning), names in warned.items():
        console.print(f"[yellow]warning[/] at {res} px ({', '.join(names)}): {warning}", highlight=False)
    for name in dict.fromkeys(r["model"]["name"] for r in records
                              if str(r["model"].get("weights") or "").startswith("random (")):
        console.print(f"{name}: no weights found, profiled with random ones (cost does not depend on them)",
                      highlight=False)
    if out is not None:
        console.print(f"{len(records)} records in {out}")


def _profile_rows(suite) -> dict:
    """Every profile row, loaded or built, with every resolution checked against its patch before
    anything is measured: (model or spec, size) -> the row the runner profiles."""
    from pebench.measure.profile import load_profile_entry

    rows = {}
    for row in [(m, None) for m in suite.models] + [(e, suite.profile_size) for e in suite.profile_encodings]:
        rows[row] = load_profile_entry(*row)
        check_resolutions(suite.resolutions, rows[row][1].patch)
    return rows


@app.command()
def validate(suite: Annotated[Path, typer.Argument(help="suite YAML file")]) -> None:
    """Check a suite file (keys, values, includes) and show the cells it expands to; runs nothing."""
    from pebench.runner.suite import expand, load_suite

    loaded = load_suite(suite)
    cells = expand(loaded)
    kinds = {kind: sum(c.kind == kind for c in cells) for kind in dict.fromkeys(("eval", "profile",
                                                                             *(c.kind for c in cells)))}
    console.print(f"{suite}: suite '{loaded.name}' is valid: {len(cells)} cells "
                  f"({', '.join(f'{count} {kind}' for kind, count in kinds.items())})", soft_wrap=True)


@app.command()
def run(
    suite: Annotated[Path, typer.Argument(help="suite YAML file")],
    out: Annotated[Path | None, typer.Option(help="results folder (default results/runs/<suite name>)")] = None,
    shard: Annotated[str | None, typer.Option(help="run shard i of n of the cells, e.g. 1/2")] = None,
    workers: Annotated[int | None, typer.Option(help="data worker processes (overrides the suite's; default "
                                                     "min(8, CPU cores); 0 = in this process)")] = None,
    cache: Annotated[str | None, typer.Option(help="folder for decoded splits, overriding the suite's; 'off' = "
                                                   "none")] = None,
) -> None:
    """Run every cell of a suite (skipping cells already finished in the results), then write the report."""
    import dataclasses

    from pebench.reports.tables import REPORT_FORMATS, load_results, write_report
    from pebench.runner.runner import check_models, finished_keys, results_path, run_cells, write_suite_file
    from pebench.runner.suite import expand, load_suite, parse_shard, shard_cells

    loaded = load_suite(suite)
    if workers is not None and workers < 0:
        raise PebenchError(f"--workers must be 0 (in-process) or more, got {workers}")
    overrides = {"workers": workers} if workers is not None else {}
    if cache is not None:
        overrides["cache"] = parse_cache(cache)
    loaded = dataclasses.replace(loaded, **overrides)
    shard_spec = parse_shard(shard) if shard else None
    torch_device = parse_device(loaded.device)
    models = check_models(loaded, torch_device)
    all_cells = expand(loaded)
    cells = shard_cells(all_cells, *shard_spec) if shard_spec else all_cells
    out_dir = out or Path("results") / "runs" / loaded.name
    path = results_path(out_dir, shard_spec)
    write_suite_file(loaded, out_dir)
    skipped = len({c.key for c in cells} & finished_keys(path, {c.key for c in all_cells}))
    if skipped:
        console.print(f"{skipped} of {len(cells)} cells already in {path}; running the other {len(cells) - skipped}")
    with _live(f"suite {loaded.name}: {len(cells) - skipped} cells, {loaded.data}") as live:
        run_cells(loaded, cells, {c.key for c in all_cells}, path, torch_device, live, models=models)
    if shard_spec:
        console.print(f"shard {shard} done: {path}; merge shards with `pebench report {out_dir}`")
        return
    records = load_results([path])
    print_passes(console, [r for r in records if r["kind"] == "eval"])
    print_data_problems(console, [r for r in records if r["kind"] == "eval"])
    written = write_report(records, out_dir, list(REPORT_FORMATS), loaded.published, findings=loaded.findings)
    console.print(f"results: {path}")
    console.print(f"report: {written['md']} and {written['html']} (plus .csv, .json)")


app.command()(report)
app.command()(check)


def _versions_line() -> str:
    """Versions read from package metadata, so that printing them does not import torch."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    def of(package: str) -> str:
        try:
            return installed(package)
        except PackageNotFoundError:
            return "not installed"

    return f"pebench {__version__}  torch {of('torch')}  timm {of('timm')}  python {platform.python_version()}"


@app.command()
def version() -> None:
    """Print pebench's version and the versions it runs with (same as --version)."""
    console.print(_versions_line(), highlight=False)


def _print_version(value: bool) -> None:
    if value:
        console.print(_versions_line(), highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version_: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                           help="print pebench's version and the versions it runs with")] = False,
) -> None:
    """Benchmark how ViT position encodings trained at 224 px hold up at higher resolutions."""


def main() -> None:
    """Entry point; typer reports usage errors itself (exit 2), pebench's own errors go here as one line:
    bad input exits 2, a run that failed for another reason (a data worker died) exits 1."""
    try:
        app()
    except PebenchError as error:
        Console(stderr=True).print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except SystemExit as exit_:
        if exit_.code == 130:  # typer turns Ctrl-C (KeyboardInterrupt) into exit code 130, silently
            Console(stderr=True).print("interrupted; rerun the same command to resume", highlight=False)
        raise

