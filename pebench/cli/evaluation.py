"""`pebench eval`, `tune` and `inspect`: one-row suites through the cell runner.

What imports torch (the runner, the data, the live terminal) is imported inside the commands, after the
options are checked, so that `pebench --help` and bad options answer without it.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import typer

from pebench.cli.options import (
    AttentionOption,
    BatchOption,
    CacheOption,
    CheckpointOption,
    CropOption,
    DataOption,
    DecodeOption,
    DeviceOption,
    ModelOption,
    NOption,
    OutOption,
    PretrainedOption,
    ResOption,
    WorkersOption,
    attach_checkpoint,
    attach_pretrained,
    check_data_spec,
    check_decode_device,
    check_device_name,
    console,
    parse_cache,
    parse_crop_pct,
    parse_device,
    parse_modes,
    parse_resolutions,
    parse_scales,
)
from pebench.cli.runs import check_writable, finish_run, results_file, start_run
from pebench.errors import PebenchError
from pebench.models.preflight import preflight
from pebench.modes import FIXED, TUNED, fixed_mode
from pebench.reports.diagnostics import diagnostics_table
from pebench.reports.summaries import print_data_problems, print_passes, print_tuning
from pebench.reports.tables import eval_table
from pebench.results import read_records
from pebench.runner.suite import Diagnostics, Suite, Tune
from pebench.settings import check_decode
from pebench.zoo import ZOO, zoo_path


def live_terminal(header: str):
    """The live terminal on rank 0; other torchrun ranks stay quiet."""
    from pebench.cli.live import LiveRun
    from pebench.runner.job import Observer

    if os.environ.get("RANK", "0") != "0":
        return nullcontext(Observer())
    return LiveRun(console, header)


def records_of(records: list[dict], path: Path, keys: set[str]) -> list[dict]:
    """This command's records: every finished one in its results file (a resumed run's too), or the new
    ones when the file could not be read back."""
    if not path.exists():
        return records
    return list({r["key"]: r for r in read_records(path) if r.get("key") in keys}.values())


def scored_title(records: list[dict], spec: str) -> str:
    """'SPEC, val split, n=N' from what the records scored (not what was asked for), naming the skipped."""
    done = [r for r in records if r["status"] == "ok"]
    scored = sorted({r["data"]["n"] for r in done})
    skipped = max((r["data"].get("skipped", 0) for r in done), default=0)
    held = max((r["data"].get("holdout", 0) for r in done), default=0)
    n = "/".join(f"{k:,}" for k in scored) or "0"
    return (f"{spec}, val split, n={n} scored" + (f" after {held} held out to tune S" if held else "")
            + (f", {skipped} unreadable skipped" if skipped else ""))


def warn_class_mismatch(models: dict, data) -> None:
    """A dataset whose classes are not the model's head: accuracy is then read against the wrong labels."""
    for name, loaded in models.items():
        classes = loaded.meta.get("num_classes")
        if classes is not None and classes != data.num_classes:
            console.print(f"[yellow]warning[/] {name} has {classes} output classes but {data.spec} has "
                          f"{data.num_classes} ({', '.join(data.class_names[:5])}"
                          f"{', ...' if data.num_classes > 5 else ''}): labels are matched by index, so accuracy "
                          "means little unless the data's classes are the model's, in order", highlight=False)


#: a run estimated to take longer than this says so before it starts, and how to take a first look
LONG_RUN_S = 300.0


def say_how_long(cells: list, path: Path, job, images: int) -> None:
    """Before a long evaluation: about how long it will take here, and a --n that gives a first look in about
    two minutes."""
    from pebench.cli.live import duration
    from pebench.runner.evaluation import estimate_seconds
    from pebench.runner.runner import finished_keys

    done = finished_keys(path, {c.key for c in cells}, strict=False) if path.exists() else set()
    seconds = estimate_seconds([c for c in cells if c.key not in done], job)
    if seconds is None or seconds < LONG_RUN_S:
        return
    first = max(20, int(images * 120 / seconds) // 10 * 10)
    console.print(f"[yellow]this run is about {duration(seconds)} of work here[/] ({len(cells) - len(done)} cells "
                  f"over {images:,} images, estimated by timing each model on a few images); for a first look in "
                  f"about two minutes add --n {first}, or narrow it with --model and --res. Ctrl-C keeps what is "
                  "done; rerun to resume.", highlight=False, soft_wrap=True)


def _evaluate(model, res, modes: tuple[str, ...], data, n, batch_size, device, workers, cache, out, crop_pct,
              checkpoint, command: str, decode: str = "cpu", attention: str = "auto", tune=None,
              diagnostics=None) -> list[dict]:
    """`pebench eval`, `tune` and (with ``diagnostics``, its settings) `inspect`: a one-row suite through
    the cell runner; prints the table. What can be checked without torch is checked first."""
    if n is not None and n <= 0:
        raise PebenchError(f"--n must be a positive number of images, got {n}")
    if batch_size <= 0:
        raise PebenchError(f"--batch-size must be positive, got {batch_size}")
    if workers is not None and workers < 0:
        raise PebenchError(f"--workers must be 0 (in-process) or more, got {workers}")
    resolutions = parse_resolutions(res)
    crop = parse_crop_pct(crop_pct)
    check_device_name(device)
    check_data_spec(data)
    check_decode(data, decode)
    if decode == "gpu" and cache not in (None, "off"):
        console.print("[yellow]--cache is not used with --decode gpu: decoded images stay on the device[/]")
    names = attach_checkpoint(model, checkpoint) or [name for name in ZOO if zoo_path(name).exists()]
    if not names:
        raise PebenchError("no shipped model is built in this install; pass --model PATH or build the zoo with "
                           "`pebench train --all`")
    preflight(names, resolutions, "--res")
    if out is not None:
        check_writable(results_file(out))

    from pebench.data import parse_data
    from pebench.runner.cells import expand
    from pebench.runner.runner import prepare, run_cells

    torch_device = parse_device(device)
    check_decode_device(decode, torch_device)
    dataset = parse_data(data, crop, decode)
    if not model and len(names) < len(ZOO):
        console.print(f"[yellow]not built, skipped:[/] {', '.join(n for n in ZOO if n not in names)}")
    suite = Suite(name="eval", models=tuple(names), resolutions=resolutions, modes=modes, data=data, n=n,
                  crop_pct=crop, batch_size=batch_size, device=str(torch_device), decode=decode, attention=attention,
                  workers=workers, cache=parse_cache(cache), tune=tune or Tune(),
                  diagnostics=diagnostics or Diagnostics())
    count = min(n or dataset.size("val"), dataset.size("val"))
    if TUNED in modes and suite.tune.n >= count:
        raise PebenchError(f"--tune-n {suite.tune.n} leaves no image to score out of {count}; lower --tune-n or "
                           "raise --n")
    kind = "diagnostics" if diagnostics else "eval"
    cells = [c for c in expand(suite) if c.kind == kind]
    keys = {c.key for c in cells}
    path = start_run(out, command, keys)
    job = prepare(suite, torch_device, {kind}, option="--res")
    job.data = dataset
    warn_class_mismatch(job.models, dataset)
    if diagnostics:
        count = min(suite.diagnostics.n, dataset.size("val"))
    else:
        say_how_long(cells, path, job, count)
    with live_terminal(f"{dataset.spec} (val, the first {count:,} images) on {torch_device}") as live:
        records = run_cells(job, cells, keys, path, live, strict=False)
    records = records_of(records, path, keys)
    title = scored_title(records, dataset.spec)
    console.print(diagnostics_table(records, title) if diagnostics else eval_table(records, title))
    if not diagnostics:
        print_passes(console, records)
        print_data_problems(console, records)
    finish_run(path, len(records), "draws the maps" if diagnostics else "writes the report with plots")
    return records


def eval_(
    model: ModelOption = None,
    res: ResOption = None,
    mode: Annotated[list[str] | None, typer.Option(help="native, interp, both (native and interp), tuned, or "
                                                        "scale=S (positions times S); repeat (default both)")] = None,
    data: DataOption = "synthetic",
    n: NOption = None,
    batch_size: BatchOption = 64,
    device: DeviceOption = "auto",
    decode: DecodeOption = "cpu",
    attention: AttentionOption = "auto",
    workers: WorkersOption = None,
    cache: CacheOption = None,
    out: OutOption = None,
    crop_pct: CropOption = "0.875",
    checkpoint: CheckpointOption = None,
    pretrained: PretrainedOption = False,
) -> None:
    """Top-1/top-5 accuracy of models at resolutions, natively, interpolated or with a position scale."""
    _evaluate(attach_pretrained(model, pretrained), res, parse_modes(mode), data, n, batch_size, device, workers,
              cache, out, crop_pct, checkpoint, "eval", decode=decode.value, attention=attention.value)


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
    device: DeviceOption = "auto",
    decode: DecodeOption = "cpu",
    attention: AttentionOption = "auto",
    workers: WorkersOption = None,
    cache: CacheOption = None,
    out: OutOption = None,
    crop_pct: CropOption = "0.875",
    checkpoint: CheckpointOption = None,
    pretrained: PretrainedOption = False,
) -> None:
    """Choose each model's position scale S per resolution on held-out images; native, interp and tuned side by
    side, all scored on the remaining images."""
    if tune_n <= 0 or points <= 0:
        raise PebenchError("--tune-n and --points must be positive")
    records = _evaluate(attach_pretrained(model, pretrained), res, (*FIXED, TUNED), data, n, batch_size, device,
                        workers, cache, out, crop_pct, checkpoint, "tune", decode=decode.value,
                        attention=attention.value, tune=Tune(n=tune_n, scales=parse_scales(scales), points=points))
    print_tuning(console, records)


def inspect(
    model: ModelOption = None,
    res: ResOption = None,
    mode: Annotated[list[str] | None, typer.Option(help="native, interp, both, or scale=S; repeat (default both)")
                    ] = None,
    data: DataOption = "synthetic",
    n: Annotated[int, typer.Option(help="images the statistics are computed on (the first of the val split)")] = 64,
    maps: Annotated[int, typer.Option(help="images whose class-token attention map is kept")] = 4,
    batch_size: BatchOption = 16,
    device: DeviceOption = "auto",
    decode: DecodeOption = "cpu",
    attention: AttentionOption = "auto",
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
    for each in modes:
        fixed_mode(each, what="--mode", tuned_hint="inspect runs fixed modes (tune first to find S, then "
                                                   "inspect scale=S)")
    _evaluate(model, res, modes, data, None, batch_size, device, workers, cache, out, crop_pct, None, "inspect",
              decode=decode.value, attention=attention.value, diagnostics=Diagnostics(enabled=True, n=n, maps=maps))
