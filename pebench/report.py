"""Turning result records into tables people read."""

from __future__ import annotations

from rich.table import Table


def _cell_text(record: dict, baseline: dict | None) -> str:
    if record["status"] != "ok":
        return f"[dim]n/a: {record['reason']}[/]"
    m = record["metrics"]
    lo, hi = m["top1_ci95"]
    text = f"[bold]{100 * m['top1']:.1f}[/] [dim]({100 * lo:.1f}-{100 * hi:.1f})[/]\ntop-5 {100 * m['top5']:.1f}"
    if baseline is not None and baseline is not record and baseline["status"] == "ok":
        delta = 100 * (m["top1"] - baseline["metrics"]["top1"])
        colour = "green" if delta >= 0 else "red"
        text += f"  [{colour}]{delta:+.1f}[/]"
    if record["mode"] == "interp" and record["same_as_native"] and record["res"] != record["model"]["train_res"]:
        text += " [dim](= native)[/]"
    return text


def eval_table(records: list[dict], title: str = "top-1 % (95% Wilson CI), top-5 %, change vs 224") -> Table:
    """Rows = models, columns = resolution x mode."""
    columns = sorted({(r["res"], r["mode"]) for r in records}, key=lambda c: (c[0], c[1] != "native"))
    models = list(dict.fromkeys(r["model"]["name"] for r in records))
    cells = {(r["model"]["name"], r["res"], r["mode"]): r for r in records}
    table = Table(title=title, show_lines=True)
    table.add_column("model")
    for res, mode in columns:
        table.add_column(f"{res} {mode}", overflow="fold")
    for name in models:
        row = [name]
        for res, mode in columns:
            record = cells.get((name, res, mode))
            train_res = record["model"]["train_res"] if record else None
            baseline = cells.get((name, train_res, mode)) or cells.get((name, train_res, "native"))
            row.append(_cell_text(record, baseline) if record else "")
        table.add_row(*row)
    return table


def profile_table(records: list[dict], title: str = "cost per image (median img/s with IQR; x none = time "
                  "relative to `none` of the same size at the same resolution)") -> Table:
    """One row per (model, resolution)."""
    table = Table(title=title)
    for column in ("model", "res", "params M", "PE params", "GMACs", "img/s", "latency ms", "peak MiB",
                   "time x none", "mem x none"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in records:
        if r["status"] != "ok":
            table.add_row(r["model"]["name"], str(r["res"]), *[""] * 6, f"[dim]n/a: {r['reason']}[/]", "")
            continue
        t, over = r["timing"], r["overhead_vs_none"]
        lo, hi = t["img_per_s_iqr"]
        speed = f"{t['img_per_s']:.1f} [dim]({lo:.1f}-{hi:.1f})[/]" + (" [yellow]noisy[/]" if t["warnings"] else "")
        memory = f"{over['memory']:.2f}" if over["memory"] is not None else "-"
        table.add_row(r["model"]["name"], str(r["res"]), f"{r['params']['total'] / 1e6:.3f}",
                      f"{r['params']['encoding_at_res']:,}", f"{r['flops']['gmacs']:.3f}", speed,
                      f"{t['latency_ms']:.1f}", f"{r['memory']['peak_mib']:.0f}", f"{over['time']:.2f}", memory)
    return table
