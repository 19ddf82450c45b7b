"""The terminal while cells run: a progress bar per pass (or per resolution of profiling), the time left,
a table of running accuracies, and each finished resolution's results as they land.

A pass's bar counts every cell's batches (images x computed cells), so it moves as soon as the first
model has run its first batch, not once every model has. The time left for the whole run weighs every
pass by images x computed cells x resolution^k: k starts at 2 (cost grows with pixels) and is fitted to
the passes measured so far, so a run whose 512-px cells are the slow ones does not claim to be nearly
done at 47%; profiling scales its last resolution's time the same way. Table cells show the running
top-1 while their pass streams (dimmed, with the images counted so far) and the final figure once it
is recorded. When a resolution's cells are all recorded and more resolutions follow, its table is
printed above the live area; the command prints the whole table once at the end.

When the output is not a terminal (a pipe, a CI log) nothing is redrawn: one line per pass started and
finished, and the tables of finished resolutions, are printed as plain output.
"""

from __future__ import annotations

import math
import time

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from pebench.modes import mode_order
from pebench.reports.class_groups import group_names, group_summary
from pebench.reports.tables import profile_table
from pebench.resolution import Label, side, sort_key
from pebench.runner.cells import Cell
from pebench.runner.job import Observer


def _figures(record: dict, groups: list[str]) -> str:
    """'99.5 / 100.0 / 99.3': top-1 overall, then per class group; 'n/a' where the mode does not apply."""
    if record["status"] != "ok":
        return "n/a"
    metrics = record["metrics"]
    shown = [metrics, *((metrics.get("groups") or {}).get(name) or {"top1": None} for name in groups)]
    return " / ".join("-" if m["top1"] is None else f"{100 * m['top1']:.1f}" for m in shown)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class LiveRun(Observer):
    def __init__(self, console: Console, header: str):
        self.console, self.header = console, header
        self.interactive = console.is_terminal
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
                                 TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                 console=console)
        self.live = Live(self, console=console, refresh_per_second=4, transient=True) if self.interactive else None
        self.plan: dict[Label, tuple[int, float]] = {}  # res -> (images, computed cells)
        self.measured: dict[Label, float] = {}  # res -> seconds per image per cell
        self.profiled: dict[Label, float] = {}  # res -> seconds its profiling took
        self.waiting: dict[tuple[str, Label], set[Cell]] = {}  # (kind, res) -> cells not yet recorded
        self.finished: dict[Cell, dict] = {}  # every kind; the running table shows the eval cells
        self.profile_order: list[Label] = []
        self.tallies: dict[Cell, object] = {}
        self.columns: list[tuple[Label, str]] = []
        self.rows: list[str] = []
        self.current: dict | None = None  # the running pass or profiling: res, task, start time, cells
        self.status = ""

    def __enter__(self) -> LiveRun:
        if self.live:
            self.live.start()
        else:
            self.say(self.header)
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.stop()

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True)

    # --- Observer -------------------------------------------------------------------------------------------
    def resuming(self, done: int, total: int, path) -> None:
        if done == total:
            self.say(f"all {total} cells are finished in {path} already; nothing to run")
        else:
            self.say(f"resuming: {done} of {total} cells are finished in {path} and kept; running the other "
                     f"{total - done}")

    def started(self, todo: list[Cell], passes: list[tuple[Label, int, float]]) -> None:
        self.plan = {res: (images, cells) for res, images, cells in passes}
        evals = [c for c in todo if c.kind == "eval"]
        self.columns = sorted({(c.res, c.mode) for c in evals}, key=lambda c: (sort_key(c[0]), mode_order(c[1])))
        self.rows = list(dict.fromkeys(c.model for c in evals))
        for cell in todo:
            self.waiting.setdefault((cell.kind, cell.res), set()).add(cell)
        self.profile_order = [res for kind, res in self.waiting if kind == "profile"]

    def pass_resumed(self, res: Label, done: int, images: int) -> None:
        self.say(f"{res} px: resuming an interrupted pass at image {done + 1:,} of {images:,} "
                 f"(the first {done:,} were counted before it stopped)")

    def pass_started(self, res: Label, images: int, tallies: dict, stage: str = "eval", done: int = 0) -> None:
        self.tallies = dict(tallies) if stage == "eval" else {}  # tuning and diagnostics tallies have no cell
        what = {"eval": f"{len(tallies)} cells", "tuning": f"tuning S: {len(tallies)} candidates",
                "diagnostics": f"attention diagnostics: {len(tallies)} cells"}[stage]
        cells = max(1, len(tallies))
        task = self.progress.add_task(f"{res} px, {what}", total=images * cells, completed=done * cells,
                                      count=f"{done:,}/{images:,} img", rate="")
        self.current = {"res": res, "task": task, "start": time.perf_counter(), "cells": cells, "images": images,
                        "done": done * cells}
        if not self.interactive:
            self.say(f"{res} px: {what} over {images - done:,} images")

    def step_done(self, res: Label, images: int) -> None:
        current = self.current
        self.progress.advance(current["task"], images)
        completed = self.progress.tasks[current["task"]].completed
        elapsed = max(time.perf_counter() - current["start"], 1e-9)
        self.progress.update(current["task"], count=f"{int(completed // current['cells']):,}/{current['images']:,} img",
                             rate=f"{(completed - current['done']) / current['cells'] / elapsed:.1f} img/s")

    def pass_finished(self, res: Label, stats, wall: float, stage: str = "eval") -> None:
        self.progress.update(self.current["task"], visible=False)
        self.current = None
        if stage == "tuning":
            self.say(f"{res} px: tuned the position scale on {stats.images:,} held-out images in {duration(wall)}")
            return
        if stage == "diagnostics":
            self.say(f"{res} px: attention diagnostics on {stats.images:,} images in {duration(wall)}")
            return
        images, cells = self.plan.get(res, (0, 0))
        if images and cells:
            self.measured[res] = wall / (images * cells)
        self.say(f"{res} px: {stats.images:,} images through {len(self.tallies)} cells in {duration(wall)}")

    def cell_started(self, cell: Cell) -> None:
        self.status = f"profiling at {cell.res} px"

    def profile_progress(self, res: Label, done: int, total: int) -> None:
        if self.current is None or self.current["res"] != res:
            task = self.progress.add_task(f"{res} px, profiling", total=total, count="", rate="")
            self.current = {"res": res, "task": task, "start": time.perf_counter(), "cells": 1, "images": 0,
                            "done": 0}
            if not self.interactive:
                self.say(f"{res} px: profiling ({total} steps: each row's memory, then timed rounds)")
        self.progress.update(self.current["task"], completed=done, count=f"{done}/{total} steps")
        if done == total:
            self.profiled[res] = time.perf_counter() - self.current["start"]
            self.progress.update(self.current["task"], visible=False)
            self.current = None
            self.status = ""

    def record(self, cell: Cell, record: dict) -> None:
        self.finished[cell] = record
        self.tallies.pop(cell, None)
        waiting = self.waiting.get((cell.kind, cell.res))
        if waiting is None:
            return
        waiting.discard(cell)
        later = [key for key, cells in self.waiting.items() if cells and key[0] == cell.kind]
        if not waiting and later:  # the last resolution's table is the command's own
            self._print_finished(cell.kind, cell.res)

    def _print_finished(self, kind: str, res: Label) -> None:
        done = [r for c, r in self.finished.items() if c.kind == kind and c.res == res]
        if kind == "eval":
            groups = group_names(done)
            self.say(f"{res} px finished, top-1 % ({' / '.join(['all', *groups])}):")
            width = max(len(r["model"]["name"]) for r in done)
            for model in dict.fromkeys(r["model"]["name"] for r in done):
                cells = sorted((r for r in done if r["model"]["name"] == model), key=lambda r: mode_order(r["mode"]))
                self.say(f"  {model:<{width}}  " + "  ".join(f"{r['mode']} {_figures(r, groups)}" for r in cells))
        elif kind == "profile":
            self.console.print(profile_table(done))

    # --- rendering ------------------------------------------------------------------------------------------
    def _exponent(self) -> float:
        points = sorted((side(res), cost) for res, cost in self.measured.items())
        if len(points) < 2 or points[0][0] == points[-1][0]:
            return 2.0
        (r0, t0), (r1, t1) = points[0], points[-1]
        return min(4.0, max(1.0, math.log(t1 / t0) / math.log(r1 / r0)))

    def time_left(self) -> float | None:
        """Seconds left for every pass (or profiled resolution), or None before the first measurement."""
        if self.profile_order and not self.plan:
            return self._profile_time_left()
        current = self.current
        if self.measured:
            ref_res, ref_cost = next(iter(self.measured.items()))
        elif current is not None and current["res"] in self.plan:
            done = self.progress.tasks[current["task"]].completed - current["done"]
            if done <= 0:
                return None
            ref_res, ref_cost = current["res"], (time.perf_counter() - current["start"]) / done
        else:
            return None
        k = self._exponent()
        left = 0.0
        for res, (images, cells) in self.plan.items():
            if res in self.measured:
                continue
            done = self.progress.tasks[current["task"]].completed if current and current["res"] == res else 0
            left += (images * cells - done) * ref_cost * (side(res) / side(ref_res)) ** k
        return left

    def _profile_time_left(self) -> float | None:
        current = self.current
        if self.profiled:
            ref_res, ref_s = next(reversed(self.profiled.items()))
        elif current is not None and self.progress.tasks[current["task"]].completed:
            task = self.progress.tasks[current["task"]]
            ref_res, ref_s = current["res"], (time.perf_counter() - current["start"]) * task.total / task.completed
        else:
            return None
        left = 0.0
        for res in self.profile_order:
            if res in self.profiled:
                continue
            share = 1.0
            if current is not None and current["res"] == res:
                task = self.progress.tasks[current["task"]]
                share = 1 - task.completed / task.total
            left += share * ref_s * (side(res) / side(ref_res)) ** 2
        return left

    def _table(self) -> Table:
        table = Table(title="top-1 % (running while a pass streams, dimmed)", title_justify="left")
        table.add_column("model")
        for res, mode in self.columns:
            table.add_column(f"{res} {mode}", justify="right")
        # accuracies only: a diagnostics cell of the same model, resolution and mode has none
        records = {c: r for c, r in self.finished.items() if c.kind == "eval"}
        by_key = {(c.model, c.res, c.mode): c for c in [*records, *self.tallies]}
        for model in self.rows:
            row = [model]
            for res, mode in self.columns:
                cell = by_key.get((model, res, mode))
                record, tally = records.get(cell), self.tallies.get(cell)
                if record is not None:
                    metrics = record.get("metrics") or {}
                    groups = group_summary(metrics, (record.get("data") or {}).get("class_groups"))
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
        estimate = "estimating time left" if left is None else f"about {duration(left)} left in all"
        parts = [f"[bold]{self.header}[/]  [dim]{estimate}[/]", self.progress]
        if self.status:
            parts.append(self.status)
        if self.rows:
            parts.append(self._table())
        return Group(*parts)
