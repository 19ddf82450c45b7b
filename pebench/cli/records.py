"""`pebench report` and `pebench check`: the commands that read result records (nothing here imports torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pebench.cli.options import console
from pebench.cli.runs import last_run
from pebench.errors import PebenchError
from pebench.reports.beside import beside as set_beside
from pebench.reports.check import METRICS, compare, environment_warnings, failed, read_baseline, write_baseline
from pebench.reports.published import PUBLISHED
from pebench.reports.write import REPORT_FORMATS, write_report
from pebench.results import load_results


def report(
    results: Annotated[list[Path] | None, typer.Argument(help="results .jsonl files or run folders (shards are "
                                                              "merged); default: the last run")] = None,
    format_: Annotated[str, typer.Option("--format", help="comma-separated: md, html, csv, json")] = "md,html,csv,json",
    out: Annotated[Path | None, typer.Option(help="folder for the report (default: the first results folder)")] = None,
    published: Annotated[list[str] | None, typer.Option(help="published table to show beside the measured ones "
                                                            "(cpvt, lookhere, rope-vit); default: the suite's")] = None,
    findings: Annotated[bool | None, typer.Option("--findings/--no-findings", help="a table of published claims "
                                                  "(CPVT, LookHere, RoPE-ViT, ...) beside the same comparison measured "
                                                  "on these records, with 95% intervals and verdicts; default: the "
                                                  "suite's")] = None,
    beside: Annotated[list[Path] | None, typer.Option(help="committed results to set these beside without "
                                                           "rerunning them, e.g. results/zoo: only their cells on the "
                                                           "same data, n and crop are kept, and these records' models "
                                                           "stand out in the figures; repeatable")] = None,
) -> None:
    """Write Markdown, HTML (self-contained, with plots), CSV and JSON reports from result records."""
    if not results:
        results = [last_run()]
        console.print(f"the last run: {results[0]}", highlight=False, soft_wrap=True)
    formats = [f.strip() for f in format_.split(",") if f.strip()]
    for fmt in formats:
        if fmt not in REPORT_FORMATS:
            raise PebenchError(f"unknown report format '{fmt}'; choose from {', '.join(REPORT_FORMATS)}")
    folder = out or (results[0] if results[0].is_dir() else results[0].parent)
    suite_file = folder / "suite.json"
    suite = json.loads(suite_file.read_text()) if suite_file.exists() else {}
    if published is None:
        published = suite.get("published", [])
    if findings is None:
        findings = suite.get("findings", False)
    for name in published:
        if name not in PUBLISHED:
            raise PebenchError(f"unknown published table '{name}'; choose from {', '.join(PUBLISHED)}")
    records = load_results(results)
    highlight: frozenset[str] = frozenset()
    if beside:
        highlight = frozenset(r["model"]["name"] for r in records if r["kind"] == "eval")
        reference = [r for source in beside for r in set_beside(records, load_results([source]), str(source))]
        console.print(f"beside: {len(reference)} cells of {', '.join(map(str, beside))} measured on the same images",
                      highlight=False)
        records = records + reference
    written = write_report(records, folder, formats, published, findings=findings, highlight=highlight)
    for fmt, path in written.items():
        console.print(f"{fmt}: {path}")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def check(
    results: Annotated[list[Path], typer.Argument(help="results .jsonl files or run folders")],
    baseline: Annotated[Path, typer.Option(help="baseline JSON file")],
    max_drop: Annotated[float, typer.Option(help="tolerated drop in points before a cell can regress")] = 1.0,
    max_group_drop: Annotated[float | None, typer.Option(help="the same for a class group's top-1 (synthetic: "
                                                              "where); default --max-drop")] = None,
    both_ways: Annotated[bool, typer.Option("--both-ways", help="fail on a change beyond tolerance and chance in "
                                                                "either direction: an 'improvement' too, until "
                                                                "the baseline is regenerated")] = False,
    metric: Annotated[str, typer.Option(help="top1 or top5")] = "top1",
    update_baseline: Annotated[bool, typer.Option("--update-baseline", help="write the baseline from these "
                                                  "results instead of comparing")] = False,
) -> None:
    """Compare results with a baseline; exit 1 when a cell or class group regressed beyond tolerance and chance
    (with --both-ways: changed either way), or is missing."""
    if metric not in METRICS:
        raise PebenchError(f"unknown --metric '{metric}'; choose from {', '.join(METRICS)}")
    if max_drop < 0 or (max_group_drop is not None and max_group_drop < 0):
        raise PebenchError(f"--max-drop and --max-group-drop must be >= 0 points, got {max_drop}, {max_group_drop}")
    records = load_results(results)
    if update_baseline:
        count = write_baseline(records, baseline, metric)
        console.print(f"wrote baseline {baseline} ({count} cells, metric {metric})")
        return
    base = read_baseline(baseline, metric)
    comparisons = compare(records, base, max_drop, baseline, max_group_drop)
    for warning in environment_warnings(records, base):
        console.print(f"[yellow]warning[/] {warning}: accuracy may differ for that reason alone")
    group_drop = max_drop if max_group_drop is None else max_group_drop
    table = Table(title=f"{metric} vs baseline {baseline} (max drop {max_drop} points, class groups {group_drop}"
                        f"{'; both ways' if both_ways else ''})")
    for column in ("cell", "status", "baseline", "now", "detail"):
        table.add_column(column)
    colours = {"regressed": "red", "missing": "red", "improved": "red" if both_ways else "green", "new": "cyan",
               "unchanged": "dim"}
    for c in sorted(comparisons, key=lambda c: (c.status == "unchanged", c.status)):
        table.add_row(c.label, f"[{colours[c.status]}]{c.status}[/]", _percent(c.baseline), _percent(c.current),
                      c.detail)
    console.print(table)
    counts = {s: sum(c.status == s for c in comparisons) for s in colours}
    console.print(", ".join(f"{k} {v}" for k, v in counts.items()))
    if failed(comparisons, both_ways):
        console.print("[red]check failed[/]" + (" (an improvement fails with --both-ways: regenerate the baseline "
                                                "with --update-baseline if it is meant)" if both_ways and
                                               counts["improved"] else ""))
        raise typer.Exit(1)
    console.print("[green]check passed[/]")
