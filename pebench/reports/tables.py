"""Turning result records into tables people read."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rich.table import Table

from pebench.atomic import atomic_path
from pebench.reports.class_groups import describe, group_metrics, group_names, group_summary
from pebench.errors import PebenchError
from pebench.modes import TUNED, mode_order
from pebench.reports.figures import plots
from pebench.resolution import sort_key
from pebench.results import READABLE_VERSIONS


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
    if group_summary(m):
        text += f"\n{group_summary(m)}"
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
        time_lo, time_hi = over.get("time_iqr") or (over["time"], over["time"])
        table.add_row(r["model"]["name"], str(r["res"]), f"{r['params']['total'] / 1e6:.3f}",
                      f"{r['params']['encoding_at_res']:,}", f"{r['flops']['gmacs']:.3f}", speed,
                      f"{t['latency_ms']:.1f}", f"{r['memory']['peak_mib']:.1f}",
                      f"{over['time']:.2f} [dim]({time_lo:.2f}-{time_hi:.2f})[/]", memory)
    return table


# --- report files: Markdown, CSV, JSON and a self-contained HTML page with plots -------------------------------

REPORT_FORMATS = ("md", "html", "csv", "json")


def load_results(paths: list[Path]) -> list[dict]:
    """Records of results files (a directory means every ``*.jsonl`` in it, e.g. the shards of a run).

    A cell present in several files (overlapping shards, a rerun) is kept once: the last one read.
    """
    from pebench.results import read_records

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(path.glob("*.jsonl"))
        elif path.exists():
            files.append(path)
        else:
            raise PebenchError(f"results file {path} does not exist; pass a results .jsonl file or a run folder")
    if not files:
        raise PebenchError(f"no results (*.jsonl) in {', '.join(map(str, paths))}; run `pebench run SUITE` first")
    cells: dict = {}
    for file in files:
        for record in read_records(file):
            if (record.get("schema_version") not in READABLE_VERSIONS
                    or record.get("kind") not in ("eval", "diagnostics", "profile")):
                raise PebenchError(f"{file}: not a pebench result record (schema_version "
                                   f"{' or '.join(map(str, READABLE_VERSIONS))} expected)")
            cells[cell_identity(record)] = record
    return list(cells.values())


def cell_identity(record: dict) -> tuple:
    """What a record measured, independent of when and with which pebench: used to merge and compare."""
    data = record.get("data") or {}
    return record["kind"], record["model"]["name"], record["res"], record["mode"], data.get("spec"), data.get("n")


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


_TUNED_NOTE = (" Tuned: S chosen per model and resolution on the first tune_n images (held out); every cell of "
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
                         lambda c: f"{c['timing']['img_per_s']:.1f}", lambda c: f"{c['overhead_vs_none']['time']:.2f}"):
            row += [field_of(c) if c and c["status"] == "ok" else ("n/a" if c else "") for c in cells]
        rows.append(row)
    return header, rows


def flat_rows(records: list[dict]) -> list[dict]:
    """One flat dict per cell, the CSV and JSON exports (with a ``top1_<group>`` column per class group)."""
    rows = []
    groups = group_names(records)
    for r in records:
        m, t = r.get("metrics") or {}, r.get("timing") or {}
        params, flops, over = r.get("params") or {}, r.get("flops") or {}, r.get("overhead_vs_none") or {}
        lo, hi = m.get("top1_ci95") or (None, None)
        rows.append({
            "kind": r["kind"], "suite": r.get("suite"), "key": r.get("key"), "model": r["model"]["name"],
            "encoding": r["model"]["encoding"], "res": r["res"], "mode": r["mode"],
            "position_scale": (r.get("position_scale") or [None])[0], "status": r["status"],
            "reason": r["reason"], "n": m.get("n"), "correct_top1": m.get("correct_top1"), "top1": m.get("top1"),
            "top1_ci95_lo": lo, "top1_ci95_hi": hi, "top5": m.get("top5"),
            **{f"top1_{g}": (group_metrics(g)(r) or {}).get("top1") for g in groups},
            "img_per_s": t.get("model_img_per_s", t.get("img_per_s")),
            "params": params.get("total"), "encoding_params_at_res": params.get("encoding_at_res"),
            "gmacs": flops.get("gmacs"), "time_x_none": over.get("time"), "device": r["device"],
            "dtype": r.get("dtype"), "torch": r["env"]["torch"], "pebench": r["env"]["pebench"],
            "git_sha": r["env"]["git_sha"],
        })
    return rows


def _provenance(records: list[dict]) -> str:
    envs = {(r["env"]["pebench"], r["env"]["torch"], r["env"]["git_sha"], r["device"], r["env"]["machine"],
             r["env"]["threads"]) for r in records}
    data = {(r["data"]["spec"], r["data"]["n"]) for r in records if r["kind"] == "eval"}
    parts = [f"pebench {p}, torch {t}, git {(sha or 'unknown')[:10]}, {d} ({m}, {th} threads)"
             for p, t, sha, d, m, th in sorted(envs, key=str)]
    parts += [f"data {spec} (val, n={n})" for spec, n in sorted(data, key=str)]
    days = sorted({r["env"]["time"][:10] for r in records if r["env"].get("time")})
    if days:
        parts.append(f"run {days[0]}" + (f" to {days[-1]}" if len(days) > 1 else ""))
    return "; ".join(parts)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _sections(records: list[dict], published: list[str],
              findings: bool = False) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, note, header, rows) of every table, shared by the Markdown and HTML reports."""
    from pebench.reports.published import PUBLISHED

    sections = []
    modes = sorted({r["mode"] for r in records if r["kind"] == "eval"}, key=mode_order)
    for mode in modes:
        sections.append((f"Top-1 %, {mode} (measured)",
                         "95% Wilson interval in brackets, then the change vs the training resolution in points."
                         + na_note(records, mode) + (_TUNED_NOTE if mode == TUNED else ""),
                         *accuracy_grid(records, mode)))
    if len(modes) > 2:
        sections.append(("Modes side by side (measured)", "Top-1 % per mode; tuned: the chosen position scale S "
                         "after the score." + _TUNED_NOTE, *modes_grid(records, modes)))
    for group in group_names(records):
        for mode in modes:
            sections.append((f"Accuracy by class group: {group}, {mode} (measured)",
                             f"Top-1 % on the images of class group {describe(group, records)} only; 95% Wilson "
                             "interval in brackets, then the change vs the training resolution in points."
                             + na_note(records, mode) + (_TUNED_NOTE if mode == TUNED else ""),
                             *accuracy_grid(records, mode, group_metrics(group))))
    if any(r["kind"] == "eval" and r["model"].get("finetune") for r in records):
        from pebench.reports.finetune import FINETUNE_NOTE, finetune_rows
        sections.append(("Fine-tuned vs zero-shot (measured)", FINETUNE_NOTE, *finetune_rows(records)))
    if any(r["kind"] == "diagnostics" for r in records):
        from pebench.reports.diagnostics import DIAGNOSTICS_NOTE, diagnostics_rows
        sections.append(("Attention diagnostics (measured)", DIAGNOSTICS_NOTE, *diagnostics_rows(records)))
    if any(r["kind"] == "profile" for r in records):
        sections.append(("Cost (measured)", "PE params = position values in use at that resolution; GMACs for one "
                         "image; img/s = median over interleaved rounds; x none = median per-round time ratio to a "
                         "`none` model of the same size timed in the same rounds.", *cost_grid(records)))
    for name in published:
        table = PUBLISHED[name]
        resolutions = sorted({res for values in table.rows.values() for res in values})
        rows = [[label] + [values.get(res, "") for res in resolutions] for label, values in table.rows.items()]
        sections.append((f"Published: {table.source}", f"Not measured by pebench. {table.protocol}. "
                         "'u' = unverified (secondary summary).", ["row", *map(str, resolutions)], rows))
    if findings:  # --- published claims vs this zoo (pebench.reports.findings) ---
        from pebench.reports.findings import FINDINGS_NOTE, findings_table
        sections.append(("Published findings vs this zoo", FINDINGS_NOTE, *findings_table(records)))
    return sections


def _anchors(headings: list[str]) -> list[str]:
    """GitHub's heading anchors (lower case, punctuation dropped, spaces as hyphens, -1, -2, ... on repeats), so
    the contents links work alike in report.md as GitHub renders it and in report.html, which sets these ids."""
    seen: dict[str, int] = {}
    anchors = []
    for heading in headings:
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.append(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _contents(headings: list[str]) -> list[tuple[str, str]]:
    """(link text, anchor) per section and figure: a long report is read from its list of contents."""
    return [(heading.removesuffix(" (measured)"), anchor) for heading, anchor in zip(headings, _anchors(headings),
                                                                                   strict=True)]


def _html_page(title: str, provenance: str, contents: list[tuple[str, str]], sections,
               figures: list[tuple[str, Path]]) -> str:
    import base64
    from html import escape

    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title><style>"
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:1300px;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:13px}"
             "th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}td:first-child,th:first-child"
             "{text-align:left}td{white-space:nowrap}th{background:#f3f3f3}.published{background:#fff8e6}.note{color:#555;"
             "font-size:13px}img{max-width:100%;border:1px solid #eee}</style></head><body>",
             f"<h1>{escape(title)}</h1><p class='note'>{escape(provenance)}</p>"]
    parts.append("<p class='note'>Contents: " + " &middot; ".join(
        f"<a href='#{anchor}'>{escape(text)}</a>" for text, anchor in contents) + "</p>")
    anchors = iter(anchor for _, anchor in contents)
    for heading, note, header, rows in sections:
        css = " class='published'" if heading.startswith("Published") else ""
        parts.append(f"<h2 id='{next(anchors)}'>{escape(heading)}</h2><p class='note'>{escape(note)}</p>"
                     f"<table{css}><thead><tr>"
                     + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</tbody></table>")
    for caption, path in figures:
        encoded = base64.b64encode(path.read_bytes()).decode()
        parts.append(f"<h2 id='{next(anchors)}'>{escape(caption)}</h2>"
                     f"<img alt='{escape(caption)}' src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(records: list[dict], out_dir: Path, formats: list[str], published: list[str] = (),
                 title: str | None = None, findings: bool = False) -> dict[str, Path]:
    """Write the report files into ``out_dir`` (each one atomically); returns format -> path."""
    import csv
    import io

    if not records:
        raise PebenchError("no result records to report; run `pebench run SUITE` first")
    suites = sorted({r.get("suite") or "" for r in records} - {""})
    title = title or f"pebench report: {', '.join(suites) or 'results'}"
    sections = _sections(records, list(published), findings)
    provenance = "Measured: " + _provenance(records)
    written: dict[str, Path] = {}
    figures = plots(records, out_dir / "plots") if {"md", "html"} & set(formats) else []
    contents = _contents([heading for heading, *_ in sections] + [caption for caption, _ in figures])

    def put(fmt: str, name: str, text: str) -> None:
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written[fmt] = out_dir / name

    if "md" in formats:
        body = [f"# {title}", "", provenance, "",
                "Contents: " + " · ".join(f"[{text}](#{anchor})" for text, anchor in contents), ""]
        for heading, note, header, rows in sections:
            body += [f"## {heading}", "", note, "", _markdown_table(header, rows), ""]
        body += [f"## {caption}\n\n![{caption}](plots/{path.name})\n" for caption, path in figures]
        put("md", "report.md", "\n".join(body))
    rows = flat_rows(records)
    if "csv" in formats:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        put("csv", "report.csv", buffer.getvalue())
    if "json" in formats:
        put("json", "report.json", json.dumps(rows, indent=1) + "\n")
    if "html" in formats:
        put("html", "report.html", _html_page(title, provenance, contents, sections, figures))
    return written
