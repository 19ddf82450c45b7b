"""Reports and terminal tables from hand-made records: accuracy by class group, and records without groups."""

import csv
import io

import pytest
import torch
from rich.console import Console

from pebench.measure.evaluate import Tally, metrics_of, wilson_interval
from pebench.reports.tables import eval_table
from pebench.reports.write import flat_rows, write_report

GROUPS = {"where": [0, 1, 2], "what": [3, 4, 5, 6, 7, 8, 9]}
#: (res, mode) -> top-1 hits per class of 2 images each: where falls from 6/6 to 2/6 at 384, what stays 14/14
HITS = {(224, "native"): [2] * 10, (384, "interp"): [1, 1, 0] + [2] * 7}


def _record(res, mode, hits, groups=True) -> dict:
    tally = Tally(None, mode, 1, num_classes=10)
    tally.class_n, tally.class_correct1 = torch.full((10,), 2), torch.tensor(hits)
    tally.n, tally.correct1, tally.correct5 = 20, sum(hits), 20
    metrics = metrics_of(tally, GROUPS)
    data = {"spec": "synthetic:seed=0,train=8,val=20", "split": "val", "requested": 20, "n": 20, "skipped": 0,
            "skipped_files": [], "fingerprint": "f", "class_groups": GROUPS}
    if not groups:  # as written before per-group metrics
        del metrics["groups"], metrics["per_class"], data["class_groups"]
    return {"schema_version": 2, "kind": "eval", "key": f"{res}{mode}", "suite": "t",
            "model": {"name": "ape", "source": "zoo", "path": "ape.safetensors", "size": "micro", "encoding": "ape",
                      "train_res": 224, "patch": 16, "checkpoint_sha256": "0"},
            "res": res, "mode": mode, "position_scale": [1.0, 1.0], "status": "ok", "reason": None,
            "same_as_native": False, "resize_api": None, "data": data, "metrics": metrics,
            "timing": {"model_img_per_s": 10.0}, "device": "cpu", "dtype": "fp32",
            "env": {"pebench": "0", "torch": "2", "timm": "1", "python": "3", "git_sha": None, "git_dirty": False,
                    "threads": 2, "machine": "x86_64", "time": "now"}}


def _records(groups=True) -> list[dict]:
    return [_record(res, mode, hits, groups) for (res, mode), hits in HITS.items()]


def _interval(correct, n) -> str:
    lo, hi = wilson_interval(correct, n)
    return f"({100 * lo:.1f}-{100 * hi:.1f})"


def test_group_metrics_add_up_to_the_overall_counts():
    for record in _records():
        m = record["metrics"]
        assert sum(g["n"] for g in m["groups"].values()) == m["n"] == sum(m["per_class"]["n"]) == 20
        assert sum(g["correct_top1"] for g in m["groups"].values()) == m["correct_top1"]
    where = _records()[1]["metrics"]["groups"]["where"]
    assert (where["n"], where["correct_top1"], round(where["top1"], 4)) == (6, 2, 0.3333)


def test_report_has_a_table_and_a_plot_per_class_group(tmp_path):
    written = write_report(_records(), tmp_path, ["md", "csv"])
    text = written["md"].read_text()
    for mode in ("native", "interp"):
        for group in ("where", "what"):
            assert f"## Accuracy by class group: {group}, {mode} (measured)" in text
    assert "where (classes 0-2, told apart only by position)" in text
    where_interp = text.split("## Accuracy by class group: where, interp")[1].split("##")[0]
    # the change is against the native cell at 224 (the interp cell there was not measured)
    assert f"| ape | ape |  | 33.3 {_interval(2, 6)} -66.7 |" in where_interp
    what_native = text.split("## Accuracy by class group: what, native")[1].split("##")[0]
    assert f"| ape | ape | 100.0 {_interval(14, 14)} |  |" in what_native
    for group in ("where", "what"):
        assert (tmp_path / "plots" / f"accuracy-{group}.png").stat().st_size > 0
        assert f"(plots/accuracy-{group}.png)" in text
    rows = list(csv.DictReader(io.StringIO(written["csv"].read_text())))
    assert [(r["res"], r["top1_where"], r["top1_what"], r["top1"]) for r in rows] == [
        ("224", "1.0", "1.0", "1.0"), ("384", str(2 / 6), "1.0", "0.8")]


def test_records_without_groups_give_the_report_without_the_section(tmp_path):
    written = write_report(_records(groups=False), tmp_path, ["md", "csv"])
    text = written["md"].read_text()
    assert "Accuracy by class group" not in text and "## Top-1 %, interp (measured)" in text
    assert f"80.0 {_interval(16, 20)} -20.0" in text
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["accuracy.png"]
    assert "top1_where" not in flat_rows(_records(groups=False))[0]
    # an old record beside a new one: its group cells say "-", not a crash
    mixed = [_record(224, "native", HITS[224, "native"], groups=False), _record(384, "interp", HITS[384, "interp"])]
    text = write_report(mixed, tmp_path / "mixed", ["md"])["md"].read_text()
    assert "| ape | ape | - |  |" in text.split("## Accuracy by class group: where, native")[1]
    assert f"| ape | ape |  | 33.3 {_interval(2, 6)} |" in text.split("## Accuracy by class group: where, interp")[1]


def _rendered(renderable) -> str:
    console = Console(file=io.StringIO(), width=250, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_terminal_tables_show_where_and_what_beside_top1():
    table = _rendered(eval_table(_records(), "synthetic, val split, n=20"))
    assert "where 100.0 / what 100.0" in table and "where 33.3 / what 100.0" in table
    title = " ".join(table.split())  # the title wraps at the table's width
    assert "then top-1 % per class group: where (classes 0-2, told apart only by position), what" in title
    old = _rendered(eval_table(_records(groups=False), "synthetic, val split, n=20"))
    assert "80.0" in old and "where" not in old

    from pebench.cli.live import LiveRun
    from pebench.runner.cells import Cell

    live = LiveRun(Console(file=io.StringIO()), "header")
    cells = [Cell("eval", "ape", res, mode, {}, f"{res}{mode}") for res, mode in HITS]
    live.started(cells, [])
    for cell, record in zip(cells, _records(), strict=True):
        live.record(cell, record)
    shown = _rendered(live._table())
    assert "80.0" in shown and "where 33.3 / what 100.0" in shown


def test_na_reason_is_said_once_per_table_and_the_page_is_dated(tmp_path):
    records = _records()
    for res in (384, 448):
        na = _record(res, "native", [0] * 10)
        na.update(status="n/a", reason="only resampled", metrics=None)
        na["env"]["time"] = "2026-11-20T10:00:00+00:00"
        records.append(na)
    text = write_report(records, tmp_path, ["md"])["md"].read_text()
    native = text.split("## Top-1 %, native (measured)")[1].split("##")[0]
    assert native.count("only resampled") == 1 and "n/a: ape at 384-448 (only resampled)." in native
    assert f"| ape | ape | 100.0 {_interval(20, 20)} | n/a | n/a |" in native
    assert "only resampled" not in text.split("## Top-1 %, interp (measured)")[1].split("##")[0]
    assert "run 2026-11-20 to now" in text.splitlines()[2]


def test_position_blind_cap_follows_the_share_of_position_classes():
    from pebench.reports.class_groups import position_blind_cap

    record = _records()[0]  # 6 of 20 images in the 3 where classes
    assert position_blind_cap(record) == pytest.approx(1 - 0.3 * 2 / 3)
    assert position_blind_cap(record, "where") == pytest.approx(1 / 3)
    assert position_blind_cap(record, "what") is None
    assert position_blind_cap(_records(groups=False)[0]) is None


def test_contents_link_every_section_and_figure_by_githubs_anchors(tmp_path):
    import re

    from pebench.reports.write import _anchors

    assert _anchors(["Top-1 %, native (measured)", "Cost (measured)", "Cost (measured)"]) == [
        "top-1--native-measured", "cost-measured", "cost-measured-1"]
    written = write_report(_records(), tmp_path, ["md", "html"])
    md, html = written["md"].read_text(), written["html"].read_text()
    md_links = re.findall(r"\]\(#([^)]+)\)", md.split("\n## ")[0])
    md_headings = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    assert md_links == _anchors(md_headings) and "top-1--native-measured" in md_links
    assert "[Accuracy by class group: where, interp](#accuracy-by-class-group-where-interp-measured)" in md
    ids = re.findall(r"<h2 id='([^']+)'>", html)
    assert re.findall(r"<a href='#([^']+)'>", html) == ids == md_links
