"""The report files of a set of records: Markdown and a self-contained HTML page, CSV and JSON (one flat row
per cell). A page opens with the accuracy-vs-resolution figure, then the findings, then the tables (in
HTML, a table whose every cell reads at least 99.5% is folded), then the other figures.

A report is a list of sections (title, note, header, rows) and figures; each kind of content adds its
own through :data:`SECTIONS` (accuracy per mode, modes side by side, class groups, fine-tunes,
diagnostics, cost, published tables, findings), and each file format is one entry of
:data:`REPORT_FORMATS`. A new section or format is one function plus one line there.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pebench.atomic import atomic_path
from pebench.errors import PebenchError
from pebench.modes import TUNED, mode_order
from pebench.reports.class_groups import describe, group_metrics, group_names
from pebench.reports.diagnostics import DIAGNOSTICS_NOTE, diagnostics_rows
from pebench.reports.figures import plots
from pebench.reports.findings import FINDINGS_NOTE, findings_table
from pebench.reports.finetune import FINETUNE_NOTE, finetune_rows
from pebench.reports.published import PUBLISHED
from pebench.reports.tables import TUNED_NOTE, accuracy_grid, cost_grid, modes_grid, na_note, time_split_grid

Section = tuple[str, str, list[str], list[list[str]]]  # title, note, header, rows


@dataclass(frozen=True)
class Options:
    """What a report is asked to show beyond its records."""

    published: tuple[str, ...] = ()  # names of pebench.reports.published tables
    findings: bool = False  # published claims vs these records (pebench.reports.findings)


def _modes(records: list[dict]) -> list[str]:
    return sorted({r["mode"] for r in records if r["kind"] == "eval"}, key=mode_order)


def _accuracy(records: list[dict], options: Options) -> list[Section]:
    return [(f"Top-1 %, {mode} (measured)",
             "95% Wilson interval in brackets, then the change vs the training resolution in points."
             + na_note(records, mode) + (TUNED_NOTE if mode == TUNED else ""), *accuracy_grid(records, mode))
            for mode in _modes(records)]


def _modes_side_by_side(records: list[dict], options: Options) -> list[Section]:
    modes = _modes(records)
    if len(modes) <= 2:
        return []
    return [("Modes side by side (measured)", "Top-1 % per mode; tuned: the chosen position scale S after the "
             "score." + TUNED_NOTE, *modes_grid(records, modes))]


def _class_groups(records: list[dict], options: Options) -> list[Section]:
    return [(f"Accuracy by class group: {group}, {mode} (measured)",
             f"Top-1 % on the images of class group {describe(group, records)} only; 95% Wilson interval in "
             "brackets, then the change vs the training resolution in points." + na_note(records, mode)
             + (TUNED_NOTE if mode == TUNED else ""), *accuracy_grid(records, mode, group_metrics(group)))
            for group in group_names(records) for mode in _modes(records)]


def _finetuned(records: list[dict], options: Options) -> list[Section]:
    if not any(r["kind"] == "eval" and r["model"].get("finetune") for r in records):
        return []
    return [("Fine-tuned vs zero-shot (measured)", FINETUNE_NOTE, *finetune_rows(records))]


def _diagnostics(records: list[dict], options: Options) -> list[Section]:
    if not any(r["kind"] == "diagnostics" for r in records):
        return []
    return [("Attention diagnostics (measured)", DIAGNOSTICS_NOTE, *diagnostics_rows(records))]


def _cost(records: list[dict], options: Options) -> list[Section]:
    if not any(r["kind"] == "profile" for r in records):
        return []
    sections = [("Cost (measured)", "PE params = position values in use at that resolution; GMACs for one image; "
                 "img/s = median over interleaved rounds; x none = median per-round time ratio to a `none` model "
                 "of the same size timed in the same rounds.", *cost_grid(records))]
    header, rows = time_split_grid(records)
    if rows:
        sections.append(("Where the time goes (measured)", "Share of one forward spent building and applying "
                         "position terms outside attention / in attention (the encoding's terms applied there) / "
                         "in the rest of the model, with the attention paths the blocks took; pebench's own "
                         "models only (docs/cost.md).", header, rows))
    return sections


def _published(records: list[dict], options: Options) -> list[Section]:
    sections = []
    for name in options.published:
        table = PUBLISHED[name]
        resolutions = sorted({res for values in table.rows.values() for res in values})
        rows = [[label] + [values.get(res, "") for res in resolutions] for label, values in table.rows.items()]
        sections.append((f"Published: {table.source}", f"Not measured by pebench. {table.protocol}. "
                         "'u' = unverified (secondary summary).", ["row", *map(str, resolutions)], rows))
    return sections


def _findings(records: list[dict], options: Options) -> list[Section]:
    return [("Published findings vs this zoo", FINDINGS_NOTE, *findings_table(records))] if options.findings else []


#: the report's sections, in order; each returns none, one or several
SECTIONS: tuple[Callable[[list[dict], Options], list[Section]], ...] = (
    _accuracy, _modes_side_by_side, _class_groups, _finetuned, _diagnostics, _cost, _published, _findings)


def _sections(records: list[dict], published: list[str], findings: bool = False) -> list[Section]:
    """Every section of the report, shared by the Markdown and HTML files."""
    options = Options(tuple(published), findings)
    return [section for build in SECTIONS for section in build(records, options)]


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


#: the report opens with what a reader came for: this figure, then the findings, then the tables
LEAD_FIGURE = "Accuracy vs resolution (measured)"


def _ordered(sections: list[Section], figures: list[tuple[str, Path]]) -> list[tuple[str, object]]:
    """("section", Section) and ("figure", (caption, png)) in reading order: the accuracy figure, the findings,
    the other tables, the other figures."""
    lead = [("figure", f) for f in figures if f[0] == LEAD_FIGURE]
    findings = [("section", s) for s in sections if s[0].startswith("Published findings")]
    rest = [("section", s) for s in sections if not s[0].startswith("Published findings")]
    return lead + findings + rest + [("figure", f) for f in figures if f[0] != LEAD_FIGURE]


def _heading(item: tuple[str, object]) -> str:
    return item[1][0]


def _uninformative(rows: list[list[str]]) -> bool:
    """A table of percentages every one of which reads at least 99.5 (the *what* classes of a zoo that
    learned them all): shown folded."""
    values = [float(m[1]) for row in rows for cell in row[1:] if (m := re.match(r"\s*(\d+\.\d)", cell))]
    return bool(values) and min(values) >= 99.5 and all(
        re.match(r"\s*(\d+\.\d|n/a|$)", cell) for row in rows for cell in row[1:])


def _html(report: Report) -> str:
    import base64
    from html import escape

    title, provenance, contents, sections, figures = (report.title, report.provenance, report.contents,
                                                      report.sections, report.figures)

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
    for kind, item in _ordered(sections, figures):
        if kind == "figure":
            caption, path = item
            encoded = base64.b64encode(path.read_bytes()).decode()
            parts.append(f"<h2 id='{next(anchors)}'>{escape(caption)}</h2>"
                         f"<img alt='{escape(caption)}' src='data:image/png;base64,{encoded}'>")
            continue
        heading, note, header, rows = item
        css = " class='published'" if heading.startswith("Published") else ""
        table = (f"<table{css}><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr></thead><tbody>"
                 + "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
                 + "</tbody></table>")
        if _uninformative(rows):
            table = f"<details><summary>every cell reads at least 99.5%: shown on request</summary>{table}</details>"
        parts.append(f"<h2 id='{next(anchors)}'>{escape(heading)}</h2><p class='note'>{escape(note)}</p>{table}")
    parts.append("</body></html>")
    return "\n".join(parts)


@dataclass(frozen=True)
class Report:
    """Everything a format renders."""

    title: str
    provenance: str
    contents: list[tuple[str, str]]  # (link text, anchor) per section and figure
    sections: list[Section]
    figures: list[tuple[str, Path]]  # (caption, png)
    records: list[dict]


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(report: Report) -> str:
    body = [f"# {report.title}", "", report.provenance, "",
            "Contents: " + " · ".join(f"[{text}](#{anchor})" for text, anchor in report.contents), ""]
    for kind, item in _ordered(report.sections, report.figures):
        if kind == "figure":
            body.append(f"## {item[0]}\n\n![{item[0]}](plots/{item[1].name})\n")
        else:
            heading, note, header, rows = item
            body += [f"## {heading}", "", note, "", _markdown_table(header, rows), ""]
    return "\n".join(body)


def _csv(report: Report) -> str:
    rows = flat_rows(report.records)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _json(report: Report) -> str:
    return json.dumps(flat_rows(report.records), indent=1) + "\n"


@dataclass(frozen=True)
class Format:
    file: str
    render: Callable[[Report], str]
    figures: bool = False  # shows the figures (rendered once for every format that does)


#: the report's file formats by name (`pebench report --format`)
REPORT_FORMATS: dict[str, Format] = {
    "md": Format("report.md", _markdown, figures=True),
    "html": Format("report.html", _html, figures=True),
    "csv": Format("report.csv", _csv),
    "json": Format("report.json", _json),
}


def write_report(records: list[dict], out_dir: Path, formats: list[str], published: list[str] = (),
                 title: str | None = None, findings: bool = False,
                 highlight: frozenset[str] = frozenset()) -> dict[str, Path]:
    """Write the report files into ``out_dir`` (each one atomically); returns format -> path. The models named
    in ``highlight`` stand out in the figures (a user's models set beside the zoo's)."""
    if not records:
        raise PebenchError("no result records to report; run `pebench run SUITE` first")
    suites = sorted({r.get("suite") or "" for r in records} - {""})
    sections = _sections(records, list(published), findings)
    figures = plots(records, out_dir / "plots", highlight) if any(REPORT_FORMATS[f].figures for f in formats) else []
    contents = _contents([_heading(item) for item in _ordered(sections, figures)])
    report = Report(title or f"pebench report: {', '.join(suites) or 'results'}", "Measured: " + _provenance(records),
                    contents, sections, figures, records)
    written: dict[str, Path] = {}
    for name in formats:
        fmt = REPORT_FORMATS[name]
        with atomic_path(out_dir / fmt.file) as tmp:
            tmp.write_text(fmt.render(report), encoding="utf-8")
        written[name] = out_dir / fmt.file
    return written
