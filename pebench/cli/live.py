"""The terminal while cells run: one progress bar per resolution pass and a table of running accuracies.

Bars count images from the first batch on (img/s and the pass's time left). The time left for the
whole run weighs every pass by images x computed cells x resolution^k: k starts at 2 (cost grows
with pixels) and is fitted to the passes measured so far, so a run whose 512-px cells are the slow
ones does not claim to be nearly done at 47%. Table cells show the running top-1 while their pass
streams (dimmed, with the images counted so far) and the final figure once it is recorded, with the
top-1 per class group under it when the data has groups (synthetic: "where" and "what"). When the
output is not a terminal (CI logs) the live area is not drawn; one line per finished pass is printed.
"""

from __future__ import annotations

import math
import time

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from pebench.modes import mode_order
from pebench.reports.class_groups import group_summary
from pebench.resolution import Label, side, sort_key
from pebench.runner.cells import Cell
from pebench.runner.job import Observer


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class LiveRun(Observer):
    def __init__(self, console: Console, header: str):
        self.console, self.header = console, header
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("img"), TaskProgressColumn(), TextColumn("{task.fields[rate]}"),
                                 TimeRemainingColumn(), console=console)
        self.live = Live(self, console=console, refresh_per_second=4, transient=True)
        self.plan: dict[int, tuple[int, int]] = {}  # res -> (images, computed cells)
        self.measured: dict[int, float] = {}  # res -> seconds per image per cell
        self.records: dict[Cell, dict] = {}
        self.tallies: dict[Cell, object] = {}
        self.columns: list[tuple[int, str]] = []
        self.rows: list[str] = []
        self.current: tuple[int, int, float] | None = None  # (res, task id, start time)
        self.status = ""

    def __enter__(self) -> LiveRun:
        self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        self.live.stop()

    # --- Observer -------------------------------------------------------------------------------------------
    def started(self, todo: list[Cell], passes: list[tuple[Label, int, float]]) -> None:
        self.plan = {res: (images, cells) for res, images, cells in passes}
        evals = [c for c in todo if c.kind == "eval"]
        self.columns = sorted({(c.res, c.mode) for c in evals}, key=lambda c: (sort_key(c[0]), mode_order(c[1])))
        self.rows = list(dict.fromkeys(c.model for c in evals))

    def pass_started(self, res: Label, images: int, tallies: dict, stage: str = "eval") -> None:
        self.tallies = dict(tallies) if stage == "eval" else {}  # tuning and diagnostics tallies have no cell
        what = {"eval": f"{len(tallies)} cells", "tuning": f"tuning S: {len(tallies)} candidates",
                "diagnostics": f"attention diagnostics: {len(tallies)} cells"}[stage]
        task = self.progress.add_task(f"{res} px, {what}", total=images, rate="")
        self.current = (res, task, time.perf_counter())

    def batch_done(self, res: Label, images: int) -> None:
        _, task, started = self.current
        self.progress.advance(task, images)
        done = self.progress.tasks[task].completed
        self.progress.update(task, rate=f"{done / max(time.perf_counter() - started, 1e-9):.1f} img/s")

    def pass_finished(self, res: Label, stats, wall: float, stage: str = "eval") -> None:
        _, task, _ = self.current
        self.progress.update(task, visible=False)
        self.current = None
        if stage == "tuning":
            self.console.print(f"{res} px: tuned the position scale on {stats.images:,} held-out images in "
                               f"{_duration(wall)}", highlight=False)
            return
        if stage == "diagnostics":
            self.console.print(f"{res} px: attention diagnostics on {stats.images:,} images in {_duration(wall)}",
                               highlight=False)
            return
        images, cells = self.plan.get(res, (0, 0))
        if images and cells:
            self.measured[res] = wall / (images * cells)
        self.console.print(f"{res} px: {stats.images:,} images through {len(self.tallies)} cells in "
                           f"{_duration(wall)}", highlight=False)

    def cell_started(self, cell: Cell) -> None:
        self.status = f"profiling at {cell.res} px"

    def record(self, cell: Cell, record: dict) -> None:
        if cell.kind == "eval":  # the table shows accuracies; diagnostics and profile cells have none
            self.records[cell] = record
        self.tallies.pop(cell, None)

    # --- rendering ------------------------------------------------------------------------------------------
    def _exponent(self) -> float:
        points = sorted((side(res), cost) for res, cost in self.measured.items())
        if len(points) < 2 or points[0][0] == points[-1][0]:
            return 2.0
        (r0, t0), (r1, t1) = points[0], points[-1]
        return min(4.0, max(1.0, math.log(t1 / t0) / math.log(r1 / r0)))

    def time_left(self) -> float | None:
        """Seconds left for every pass, or None before the first measurement."""
        if not self.measured and self.current is None:
            return None
        k = self._exponent()
        if self.measured:
            ref_res, ref_cost = next(iter(self.measured.items()))
        else:
            res, task, started = self.current
            done = self.progress.tasks[task].completed
            if not done:
                return None
            ref_res, ref_cost = res, (time.perf_counter() - started) / (done * max(1, self.plan[res][1]))
        left = 0.0
        for res, (images, cells) in self.plan.items():
            if res in self.measured:
                continue
            done = self.progress.tasks[self.current[1]].completed if self.current and self.current[0] == res else 0
            left += (images - done) * cells * ref_cost * (side(res) / side(ref_res)) ** k
        return left

    def _table(self) -> Table:
        table = Table(title="top-1 % (running while a pass streams, dimmed)", title_justify="left")
        table.add_column("model")
        for res, mode in self.columns:
            table.add_column(f"{res} {mode}", justify="right")
        by_key = {(c.model, c.res, c.mode): c for c in [*self.records, *self.tallies]}
        for model in self.rows:
            row = [model]
            for res, mode in self.columns:
                cell = by_key.get((model, res, mode))
                record, tally = self.records.get(cell), self.tallies.get(cell)
                if record is not None:
                    metrics = record.get("metrics") or {}
                    groups = group_summary(metrics)  # e.g. "where 93.1 / what 99.9"
                    row.append("[dim]n/a[/]" if record["status"] != "ok" else f"{100 * metrics['top1']:.1f}"
                               + (f"\n[dim]{groups}[/]" if groups else ""))
                elif tally is not None and tally.n:
                    row.append(f"[dim]{100 * tally.running_top1:.1f} ({tally.n})[/]")
                else:
                    row.append("")
            table.add_row(*row)
        return table

    def __rich__(self) -> Group:
        left = self.time_left()
        estimate = "estimating time left" if left is None else f"about {_duration(left)} left in all"
        parts = [f"[bold]{self.header}[/]  [dim]{estimate}[/]", self.progress]
        if self.status:
            parts.append(self.status)
        if self.rows:
            parts.append(self._table())
        return Group(*parts)
