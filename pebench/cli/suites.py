"""`pebench validate` and `pebench run`: YAML suites through the cell runner, then the report (what imports
torch, the cells and the runner, is imported inside the commands, so `pebench --help` stays fast)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from pebench.cli.evaluation import live_terminal
from pebench.cli.options import check_decode_device, check_device_name, console, parse_cache, parse_device
from pebench.cli.runs import check_writable, runs_root, start_run
from pebench.errors import PebenchError, did_you_mean
from pebench.models.preflight import preflight
from pebench.reports.published import PUBLISHED
from pebench.reports.summaries import print_data_problems, print_passes
from pebench.reports.write import REPORT_FORMATS, write_report
from pebench.results import load_results
from pebench.runner.suite import read_suite
from pebench.settings import check_decode


def load_suite(path: Path):
    """A suite file read and checked, the names of its published tables included (the report owns them)."""
    suite = read_suite(path)
    if suite.plugins:
        from pebench.encodings.plugins import load_plugin

        for target in suite.plugins:
            load_plugin(target, f"suite {path}")
    check_decode(suite.data, suite.decode)
    for name in suite.published:
        if name not in PUBLISHED:
            raise PebenchError(f"{path}: 'published' has unknown table '{name}'{did_you_mean(name, list(PUBLISHED))}; "
                               f"allowed: {', '.join(PUBLISHED)}")
    return suite


def validate(suite: Annotated[Path, typer.Argument(help="suite YAML file")]) -> None:
    """Check a suite file (keys, values, includes) and show the cells it expands to; runs nothing."""
    from pebench.runner.cells import expand

    loaded = load_suite(suite)
    cells = expand(loaded)
    kinds = {kind: sum(c.kind == kind for c in cells) for kind in dict.fromkeys(("eval", "profile",
                                                                             *(c.kind for c in cells)))}
    console.print(f"{suite}: suite '{loaded.name}' is valid: {len(cells)} cells "
                  f"({', '.join(f'{count} {kind}' for kind, count in kinds.items())})", soft_wrap=True)


def run(
    suite: Annotated[Path, typer.Argument(help="suite YAML file")],
    out: Annotated[Path | None, typer.Option(help="results folder (default results/runs/<suite name>, or under "
                                                  "$PEBENCH_RUNS)")] = None,
    shard: Annotated[str | None, typer.Option(help="run shard i of n of the cells, e.g. 1/2")] = None,
    workers: Annotated[int | None, typer.Option(help="data worker processes (overrides the suite's; default "
                                                     "min(8, CPU cores); 0 = in this process)")] = None,
    cache: Annotated[str | None, typer.Option(help="folder for decoded splits, overriding the suite's; 'off' = "
                                                   "none")] = None,
) -> None:
    """Run every cell of a suite (skipping cells already finished in the results), then write the report."""

    loaded = load_suite(suite)
    if workers is not None and workers < 0:
        raise PebenchError(f"--workers must be 0 (in-process) or more, got {workers}")
    overrides = {"workers": workers} if workers is not None else {}
    if cache is not None:
        overrides["cache"] = parse_cache(cache)
    loaded = dataclasses.replace(loaded, **overrides)
    check_device_name(loaded.device)
    preflight(list(loaded.models), loaded.resolutions, need_weights=False)
    out_dir = out or runs_root() / loaded.name
    check_writable(out_dir / "suite.json")

    from pebench.runner.cells import expand, parse_shard, shard_cells
    from pebench.runner.runner import finished_keys, prepare, results_path, run_cells, write_suite_file

    shard_spec = parse_shard(shard) if shard else None
    torch_device = parse_device(loaded.device)
    check_decode_device(loaded.decode, torch_device)
    loaded = dataclasses.replace(loaded, device=str(torch_device))  # cells and records name the device that runs
    all_cells = expand(loaded)
    cells = shard_cells(all_cells, *shard_spec) if shard_spec else all_cells
    path = results_path(out_dir, shard_spec)
    finished_keys(path, {c.key for c in all_cells})  # refuses another suite's records before any work
    path = start_run(path, f"run-{loaded.name}", set())
    job = prepare(loaded, torch_device, {c.kind for c in all_cells})
    write_suite_file(loaded, out_dir)
    with live_terminal(f"suite {loaded.name}: {len(cells)} cells, {loaded.data}") as live:
        run_cells(job, cells, {c.key for c in all_cells}, path, live)
    if shard_spec:
        console.print(f"shard {shard} done: {path}; merge shards with `pebench report {out_dir}`")
        return
    records = load_results([path])
    print_passes(console, [r for r in records if r["kind"] == "eval"])
    print_data_problems(console, [r for r in records if r["kind"] == "eval"])
    written = write_report(records, out_dir, list(REPORT_FORMATS), loaded.published, findings=loaded.findings)
    console.print(f"results: {path}")
    console.print(f"report: {written['md']} and {written['html']} (plus .csv, .json)")
