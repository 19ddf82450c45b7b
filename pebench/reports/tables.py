"""Result records as the tables people read: the terminal's rich tables and the report's grids (header and rows)."""

from __future__ import annotations

from rich.table import Table

from pebench.modes import TUNED, mode_order
from pebench.reports.class_groups import describe, group_names, group_summary
from pebench.resolution import sort_key


def _overall(record: dict) -> dict:
    return record["metrics"]


def change_vs_trained(record: dict, reference: dict | None, metric=_overall) -> float | None:
    """Top-1 change in points vs the same model at its training resolution; None when not comparable.
    ``metric``: record -> the metrics compared (default all classes; e.g. one class group's)."""
    if record["status"] != "ok" or reference is None or reference is record or reference["status"] != "ok":
        return None
    now, then = metric(record), metric(reference)
    if not now or not then or now["top1"] is None or then["top1"] is None:
        return None
    return 100 * (now["top1"] - then["top1"])


def _cell_text(record: dict, reference: dict | None) -> str:
    if record["status"] != "ok":
        return "[dim]n/a[/]"
    m = record["metrics"]
    lo, hi = m["top1_ci95"]
    text = f"[bold]{100 * m['top1']:.1f}[/]"
    delta = change_vs_trained(record, reference)
    if delta is not None:
        text += f" [{'green' if delta >= 0 else 'red'}]{delta:+.1f}[/]"
    text += f"\n[dim]({100 * lo:.1f}-{100 * hi:.1f})[/]\ntop-5 {100 * m['top5']:.1f}"
    summary = group_summary(m, (record.get("data") or {}).get("class_groups"))
    if summary:
        text += f"\n{summary}"
    if record["mode"] == "interp" and record["same_as_native"] and record["res"] != record["model"]["train_res"]:
        text += " [dim](= native)[/]"
    if record["mode"] == TUNED:
        text += f"\n[cyan]S={record['position_scale'][0]:.3g}[/]"
    return text


def eval_table(records: list[dict], data: str) -> Table:
    """Rows = models, columns = resolution x mode; ``data`` names the data, split and n in the title.
    The change vs the training resolution is shown only where that resolution was measured; reasons
    for n/a cells are listed once under the table."""
    columns = sorted({(r["res"], r["mode"]) for r in records}, key=lambda c: (sort_key(c[0]), mode_order(c[1])))
    models = list(dict.fromkeys(r["model"]["name"] for r in records))
    cells = {(r["model"]["name"], r["res"], r["mode"]): r for r in records}
    references = {}
    for r in records:
        train_res = r["model"]["train_res"]
        references[r["model"]["name"], r["mode"]] = (cells.get((r["model"]["name"], train_res, r["mode"]))
                                                     or cells.get((r["model"]["name"], train_res, "native")))
    changes = any(change_vs_trained(r, references[r["model"]["name"], r["mode"]]) is not None for r in records)
    trained = sorted({r["model"]["train_res"] for r in records})
    title = f"top-1 % (95% Wilson CI), top-5 %{f', change vs {trained[0]}' if changes and len(trained) == 1 else ''}"
    if changes and len(trained) > 1:
        title += ", change vs each model's training resolution"
    if group_names(records):
        title += "\nthen top-1 % per class group: " + ", ".join(describe(g, records) for g in group_names(records))
    table = Table(title=f"{data}\n{title}", show_lines=True)
    table.add_column("model")
    for res, mode in columns:
        table.add_column(f"{res} {mode}", overflow="fold")
    reasons: dict[str, list[str]] = {}
    for name in models:
        row = [name]
        for res, mode in columns:
            record = cells.get((name, res, mode))
            row.append(_cell_text(record, references[name, mode]) if record else "")
            if record and record["status"] != "ok":
                reasons.setdefault(record["reason"], []).append(f"{name} {res} {mode}")
        table.add_row(*row)
    table.caption = "\n".join(f"n/a ({', '.join(where)}): {reason}" for reason, where in reasons.items()) or None
    table.caption_justify = "left"
    return table


def profile_table(records: list[dict]) -> Table:
    """One row per (model, resolution); the title says how it was measured."""
    runs = {tuple((r.get("settings") or {}).get(k) for k in ("mode", "batch_size", "dtype", "threads", "device",
                                                               "channels_last", "compiled", "rounds"))
            for r in records}
    how = "; ".join(f"{mode}, batch {batch}, {dtype}, {threads} threads, {device}"
                    + (", channels-last" if cl else "") + (", compiled" if compiled else "") + f", {rounds} rounds"
                    for mode, batch, dtype, threads, device, cl, compiled, rounds in sorted(runs, key=str)
                    if mode is not None)
    table = Table(title=f"cost per image ({how}); img/s: median over interleaved rounds (IQR); x none: "
                  "median per-round time ratio to `none` of the same size, timed in the same rounds")
    for column in ("model", "res", "params M", "PE params", "GMACs", "img/s", "latency ms", "peak MiB",
                   "time x none", "mem x none", "pos / attn / rest"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in records:
        if r["status"] != "ok":
            table.add_row(r["model"]["name"], str(r["res"]), *[""] * 6, f"[dim]n/a: {r['reason']}[/]", "", "")
            continue
        split = r.get("breakdown")
        shares = "-" if not split else " / ".join(f"{100 * split[f'{part}_share']:.0f}%"
                                                  for part in ("position", "attention", "rest"))
        t, over = r["timing"], r["overhead_vs_none"]
        lo, hi = t["img_per_s_iqr"]
        speed = f"{t['img_per_s']:.1f} [dim]({lo:.1f}-{hi:.1f})[/]" + (" [yellow]noisy[/]" if t["warnings"] else "")
        if over is None:  # an architecture pebench cannot build without position information
            time, memory = "[dim]no none twin[/]", "-"
        else:
            memory = f"{over['memory']:.2f}" if over["memory"] is not None else "-"
            time_lo, time_hi = over.get("time_iqr") or (over["time"], over["time"])
            time = f"{over['time']:.2f} [dim]({time_lo:.2f}-{time_hi:.2f})[/]"
        table.add_row(r["model"]["name"], str(r["res"]), f"{r['params']['total'] / 1e6:.3f}",
                      f"{r['params']['encoding_at_res']:,}", f"{r['flops']['gmacs']:.3f}", speed,
                      f"{t['latency_ms']:.1f}", f"{r['memory']['peak_mib']:.1f}", time, memory, shares)
    return table


def accuracy_cell(record: dict | None, reference: dict | None, metric=_overall) -> str:
    if record is None:
        return ""
    if record["status"] != "ok":
        return "n/a"  # the reason is said once, in the table's note (na_note)
    m = metric(record)
    if not m or m["top1"] is None:  # a record without this group, or none of its images in the sample
        return "-"
    lo, hi = m["top1_ci95"]
    delta = change_vs_trained(record, reference, metric)
    return f"{100 * m['top1']:.1f} ({100 * lo:.1f}-{100 * hi:.1f})" + (
        f" {delta:+.1f}" if delta is not None else "") + (
        f" S={record['position_scale'][0]:.3g}" if record["mode"] == TUNED else "")


def accuracy_grid(records: list[dict], mode: str, metric=_overall) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per model, one column per resolution, for one mode; ``metric``: record ->
    the metrics shown (default all classes; e.g. one class group's)."""
    evals = [r for r in records if r["kind"] == "eval"]
    resolutions = sorted({r["res"] for r in evals}, key=sort_key)
    by_cell = {(r["model"]["name"], r["res"], r["mode"]): r for r in evals}
    rows = []
    for name in dict.fromkeys(r["model"]["name"] for r in evals):
        first = next(r for r in evals if r["model"]["name"] == name)
        train_res = first["model"]["train_res"]
        reference = by_cell.get((name, train_res, mode)) or by_cell.get((name, train_res, "native"))
        rows.append([name, first["model"]["encoding"]] +
                    [accuracy_cell(by_cell.get((name, res, mode)), reference, metric) for res in resolutions])
    return ["model", "encoding", *map(str, resolutions)], rows


def na_note(records: list[dict], mode: str) -> str:
    """' n/a: ape, ape+peg at 384-512 (a learned grid is only resampled).': each reason once, with the
    models and resolutions it covers ('' when no cell of this mode is n/a)."""
    by_reason: dict[str, dict[str, list]] = {}
    for r in records:
        if r["kind"] == "eval" and r["mode"] == mode and r["status"] != "ok":
            by_reason.setdefault(r["reason"], {}).setdefault(r["model"]["name"], []).append(r["res"])
    parts = []
    for reason, models in by_reason.items():
        spans = {}
        for name, resolutions in models.items():
            ordered = sorted(resolutions, key=sort_key)
            spans.setdefault(str(ordered[0]) if len(ordered) == 1 else f"{ordered[0]}-{ordered[-1]}", []).append(name)
        cells = "; ".join(f"{', '.join(names)} at {span}" for span, names in spans.items())
        parts.append(f"{cells} ({reason})")
    return " n/a: " + "; ".join(parts) + "." if parts else ""


TUNED_NOTE = (" Tuned: S chosen per model and resolution on the first tune_n images (held out); every cell of "
               "such a run is scored on the remaining images only.")


def modes_grid(records: list[dict], modes: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: per model one row per mode, one column per resolution (top-1 and, tuned, S)."""
    evals = [r for r in records if r["kind"] == "eval"]
    resolutions = sorted({r["res"] for r in evals}, key=sort_key)
    by_cell = {(r["model"]["name"], r["res"], r["mode"]): r for r in evals}
    rows = []
    for name in dict.fromkeys(r["model"]["name"] for r in evals):
        for mode in modes:
            cells = [by_cell.get((name, res, mode)) for res in resolutions]
            if not any(cells):
                continue
            rows.append([name, mode] + [_short_cell(c) for c in cells])
    return ["model", "mode", *map(str, resolutions)], rows


def _short_cell(record: dict | None) -> str:
    if record is None:
        return ""
    if record["status"] != "ok":
        return "n/a"
    text = f"{100 * record['metrics']['top1']:.1f}"
    return text + (f" (S={record['position_scale'][0]:.3g})" if record["mode"] == TUNED else "")


def _time_x_none(record: dict) -> str:
    over = record["overhead_vs_none"]
    return f"{over['time']:.2f}" if over else "-"  # None: a model with no position-free twin


def time_split_grid(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Position / attention / rest shares of a forward and the attention paths, per model and resolution, for
    the profile records that have a breakdown."""
    profiles = [r for r in records if r["kind"] == "profile" and r["status"] == "ok" and r.get("breakdown")]
    rows = []
    for r in profiles:
        split = r["breakdown"]
        paths = ", ".join(f"{count} {path}" for path, count in sorted(split.get("attention_paths", {}).items()))
        rows.append([r["model"]["name"], str(r["res"]), *(f"{100 * split[f'{part}_share']:.0f}%"
                                                          for part in ("position", "attention", "rest")),
                     f"{split['total_ms']:.1f}", paths])
    return ["model", "res", "position", "attention", "rest", "ms per batch", "attention paths (blocks)"], rows


def cost_grid(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Params, position params in use, GMACs, img/s and time vs `none`, per model, per resolution."""
    profiles = [r for r in records if r["kind"] == "profile"]
    resolutions = sorted({r["res"] for r in profiles}, key=sort_key)
    by_cell = {(r["model"]["name"], r["res"]): r for r in profiles}
    header = ["model", "params M"] + [f"{what} @{res}" for what in ("PE params", "GMACs", "img/s", "x none")
                                      for res in resolutions]
    rows = []
    for name in dict.fromkeys(r["model"]["name"] for r in profiles):
        cells = [by_cell.get((name, res)) for res in resolutions]
        ok = [c for c in cells if c and c["status"] == "ok"]
        row = [name, f"{ok[0]['params']['total'] / 1e6:.3f}" if ok else ""]
        for field_of in (lambda c: f"{c['params']['encoding_at_res']:,}", lambda c: f"{c['flops']['gmacs']:.3f}",
                         lambda c: f"{c['timing']['img_per_s']:.1f}", _time_x_none):
            row += [field_of(c) if c and c["status"] == "ok" else ("n/a" if c else "") for c in cells]
        rows.append(row)
    return header, rows
