"""Terminal summaries printed after an evaluation: where each pass's time went, files that could not
be read, and the position scales `pebench tune` chose."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from pebench.modes import TUNED
from pebench.resolution import sort_key


def print_data_problems(console: Console, records: list[dict]) -> None:
    for res in sorted({r["res"] for r in records}, key=sort_key):
        data = next((r["data"] for r in records if r["res"] == res and (r.get("data") or {}).get("skipped")), None)
        if data:
            names = data["skipped_files"]
            console.print(f"[yellow]{data['skipped']} unreadable file(s) skipped at {res} px[/] (not counted in n): "
                          + "; ".join(names[:10]) + (" ..." if data["skipped"] > 10 else ""), highlight=False)


def print_passes(console: Console, records: list[dict]) -> None:
    """Where the time went, per resolution pass."""
    for res in sorted({r["res"] for r in records}, key=sort_key):
        timing = next((r["timing"] for r in records if r["res"] == res and "pass_img_per_s" in (r.get("timing") or {})
                       and r.get("measured_as") is None), None)  # records of schema 1 did not measure passes
        if timing is None:
            continue
        rate = timing["data_img_per_s"]
        verdict = "[yellow]data-bound[/]" if timing["data_bound"] else "model-bound"
        console.print(f"{res} px pass: {timing['pass_img_per_s']:.1f} img/s through {timing['cells_in_pass']} cells; "
                      f"data {'-' if rate is None else f'{rate:.0f}'} img/s ({timing['data_source']}, "
                      f"{timing['workers']} workers); models waited {100 * timing['wait_fraction']:.0f}% of the "
                      f"time: {verdict}", highlight=False)


def print_tuning(console: Console, records: list[dict]) -> None:
    table = Table(title="position scale S chosen on the held-out images (top-1 % there per candidate)")
    for column in ("model", "res", "interp G0/G", "chosen S", "candidates"):
        table.add_column(column)
    for r in sorted((r for r in records if r["mode"] == TUNED and r.get("tuning")),
                    key=lambda r: (r["model"]["name"], sort_key(r["res"]))):
        t = r["tuning"]
        tried = "  ".join(("[bold]" if s == t["scale"] else "") + f"{s:.3g}: {100 * a:.1f}" + ("[/]" if s == t["scale"]
                          else "") for s, a in zip(t["scales"], t["tune_top1"], strict=True))
        table.add_row(r["model"]["name"], str(r["res"]), f"{t['interp_scale']:.3g}", f"{t['scale']:.3g}", tried)
    console.print(table)
