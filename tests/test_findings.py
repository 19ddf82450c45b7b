"""Published findings vs measured cells: intervals, verdicts, merging results files, the report section (no torch)."""

import json
import math

from typer.testing import CliRunner

from pebench.cli import app
from pebench.reports.findings import FINDINGS, Finding, change, compare, findings_table, interval
from pebench.reports.write import _sections

LOSES = Finding("t-loses", "APE, interpolated, loses at 384", "published 72.2 -> 71.2", change("ape", "interp", 384),
                "<0")


def _record(model: str, res, mode: str, correct: int | None, n: int | None, sha: str = "c0") -> dict:
    ok = correct is not None
    top1 = correct / n if ok else None
    return {"schema_version": 2, "kind": "eval", "key": f"{model}{res}{mode}{n}", "suite": "t",
            "model": {"name": model, "source": "zoo", "encoding": model, "train_res": 224, "patch": 16,
                      "checkpoint_sha256": sha},
            "res": res, "mode": mode, "position_scale": [1.0, 1.0], "status": "ok" if ok else "not_applicable",
            "reason": None if ok else "a learned grid is only resampled", "same_as_native": res == 224,
            "data": {"spec": "synthetic:seed=0", "split": "val", "n": n},
            "metrics": {"n": n, "correct_top1": correct, "correct_top5": n, "top1": top1, "top5": 1.0,
                        "top1_ci95": [top1, top1]} if ok else None,
            "device": "cpu", "dtype": "fp32",
            "env": {"pebench": "0", "torch": "2", "timm": "1", "python": "3", "git_sha": None, "git_dirty": False,
                    "threads": 2, "machine": "x86_64", "time": "now"}}


def _row(finding: Finding, records: list[dict]) -> list[str]:
    header, rows = findings_table(records, (finding,))
    assert len(header) == len(rows[0]) == 6
    return rows[0]


def test_a_clear_loss_is_reproduced():
    row = _row(LOSES, [_record("ape", 224, "interp", 950, 1000), _record("ape", 384, "interp", 850, 1000)])
    assert row[-1] == "reproduced"
    assert "ape interp: 224 95.0 -> 384 85.0" in row[3] and row[3].startswith("-10.0 (")
    assert row[4] == "1000" and "published" in row[2]


def test_a_clear_gain_on_a_loses_claim_is_not_reproduced():
    row = _row(LOSES, [_record("ape", 224, "interp", 800, 1000), _record("ape", 384, "interp", 900, 1000)])
    assert row[-1] == "not reproduced"


def test_a_small_noisy_difference_is_inconclusive():
    row = _row(LOSES, [_record("ape", 224, "interp", 16, 20), _record("ape", 384, "interp", 14, 20)])
    assert row[-1] == "inconclusive"


def test_a_missing_or_not_applicable_cell_is_not_measured_and_named():
    row = _row(LOSES, [_record("ape", 224, "interp", 950, 1000)])
    assert row[-1] == "not measured" and "ape interp 384 (no record)" in row[3]
    native = Finding("t", "c", "s", change("ape", "native", 384), "<0")
    row = _row(native, [_record("ape", 224, "native", 950, 1000), _record("ape", 384, "native", None, None)])
    assert row[-1] == "not measured" and "ape native 384 (n/a: a learned grid is only resampled)" in row[3]


def test_cells_of_one_model_from_different_checkpoints_are_not_compared():
    row = _row(LOSES, [_record("ape", 224, "interp", 950, 1000, sha="old"),
                       _record("ape", 384, "interp", 850, 1000, sha="new")])
    assert row[-1] == "not measured" and "different checkpoints" in row[3]


def test_interval_matches_a_hand_computed_agresti_caffo_value():
    # 85/100 -> 70/100: p~ = 86/102 and 71/102; var = (p~1 q~1 + p~2 q~2) / 102
    p1, p2 = 86 / 102, 71 / 102
    half = 1.959963984540054 * math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 102)
    estimate, lo, hi = interval([(1.0, 70, 100), (-1.0, 85, 100)])
    assert math.isclose(estimate, -0.15)
    assert math.isclose(lo, (p2 - p1) - half) and math.isclose(hi, (p2 - p1) + half)
    assert math.isclose(lo, -0.26085, abs_tol=1e-5) and math.isclose(hi, -0.03327, abs_tol=1e-5)
    part = compare(LOSES.terms, "<0", {("ape", 384, "interp"): _record("ape", 384, "interp", 70, 100),
                                       ("ape", 224, "interp"): _record("ape", 224, "interp", 85, 100)})
    assert math.isclose(part["lo"], 100 * lo) and part["verdict"] == "reproduced"
    # a cell used with +1 and -1 cancels: no estimate and no variance left
    same = compare(((1.0, ("ape", 384, "interp")), (-1.0, ("ape", 384, "interp"))), "<0",
                   {("ape", 384, "interp"): _record("ape", 384, "interp", 70, 100)})
    assert (same["estimate"], same["lo"], same["hi"], same["verdict"]) == (0, 0, 0, "inconclusive")


def test_holds_claims_use_a_one_point_margin():
    holds = Finding("t", "PEG holds", "s", change("peg", "native", 384), ">=0")
    big = [_record("peg", 224, "native", 40000, 50000), _record("peg", 384, "native", 39900, 50000)]
    assert _row(holds, big)[-1] == "reproduced"  # -0.2 points, interval well within -1
    assert _row(holds, [_record("peg", 224, "native", 840, 1000), _record("peg", 384, "native", 790, 1000)])[-1] \
        == "not reproduced"
    assert _row(holds, [_record("peg", 224, "native", 788, 1000), _record("peg", 384, "native", 791, 1000)])[-1] \
        == "inconclusive"


def test_duplicate_cells_keep_the_larger_n():
    records = [_record("ape", 224, "interp", 950, 1000), _record("ape", 384, "interp", 60, 70),
               _record("ape", 384, "interp", 850, 1000), _record("ape", 224, "interp", 70, 70)]
    row = _row(LOSES, records)
    assert "224 95.0 -> 384 85.0" in row[3] and row[4] == "1000"
    # an ok record beats a not-applicable one whatever the order
    row = _row(LOSES, [_record("ape", 384, "interp", 850, 1000), _record("ape", 384, "interp", None, None),
                       _record("ape", 224, "interp", 950, 1000)])
    assert row[-1] == "reproduced"


def test_versus_all_needs_every_comparison_reproduced():
    lead = next(f for f in FINDINGS if f.id == "lookhere-leads-1024")
    base = [_record("lookhere", 1024, "native", 900, 1000), _record("ape", 1024, "interp", 500, 1000),
            _record("alibi", 1024, "tuned", 600, 1000), _record("alibi", 1024, "native", 990, 1000)]
    row = _row(lead, base)
    assert row[-1] == "reproduced"  # alibi is compared tuned (LookHere's protocol), not native
    assert "vs ape interp 50.0" in row[3] and "vs alibi tuned 60.0" in row[3]
    assert _row(lead, base + [_record("rope_axial", 1024, "tuned", 990, 1000)])[-1] == "not reproduced"
    assert _row(lead, base + [_record("rope_axial", 1024, "native", 100, 1000)])[-1] == "not measured"
    assert _row(lead, base[:1])[-1] == "not measured"


def test_every_shipped_finding_names_published_numbers_and_a_valid_sign():
    ids = [f.id for f in FINDINGS]
    assert len(ids) == len(set(ids)) >= 10
    for finding in FINDINGS:
        assert "published" in finding.source and finding.sign in ("<0", ">0", ">=0")
    header, rows = findings_table([])
    assert len(rows) == len(FINDINGS) and {row[-1] for row in rows} == {"not measured"}


def _results(tmp_path):
    records = [_record("ape", 224, "interp", 950, 1000), _record("ape", 384, "interp", 850, 1000)]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records, path


def test_the_report_section_appears_only_when_asked(tmp_path):
    records, path = _results(tmp_path)
    titles = [s[0] for s in _sections(records, [], findings=True)]
    assert titles[-1] == "Published findings vs this zoo"
    assert "Published findings vs this zoo" not in [s[0] for s in _sections(records, [])]
    result = CliRunner().invoke(app, ["report", str(path), "--findings", "--format", "md", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "report.md").read_text()
    assert "## Published findings vs this zoo" in text and "Agresti-Caffo" in text
    assert "| ape-interp-384 |" in text and "reproduced" in text


def _with_hits(record: dict, hits: list[bool]) -> dict:
    from pebench.results import pack_hits

    record["metrics"]["image_hits"] = pack_hits(hits)
    record["data"]["requested"] = len(hits)
    return record


def test_cells_on_the_same_images_are_compared_paired():
    from pebench.results import pack_hits, unpack_hits

    hits = [True, False, True, True, False, False, True]
    assert unpack_hits(pack_hits(hits), len(hits)) == hits
    # 100 images: 8 right only at 224, 1 right only at 384, 60 right at both: Bonett-Price by hand
    at_224 = [True] * 8 + [False] * 1 + [True] * 60 + [False] * 31
    at_384 = [False] * 8 + [True] * 1 + [True] * 60 + [False] * 31
    records = {("ape", 384, "interp"): _with_hits(_record("ape", 384, "interp", 61, 100), at_384),
               ("ape", 224, "interp"): _with_hits(_record("ape", 224, "interp", 68, 100), at_224)}
    part = compare(LOSES.terms, "<0", records)
    p12, p21 = 2 / 102, 9 / 102  # (1 + 1) / (n + 2) gained, (8 + 1) / (n + 2) lost
    centre = p12 - p21
    half = 1.959963984540054 * math.sqrt((p12 + p21 - centre**2) / 102)
    assert part["paired"] and math.isclose(part["estimate"], -7.0)
    assert math.isclose(part["lo"], 100 * (centre - half)) and math.isclose(part["hi"], 100 * (centre + half))
    unpaired = compare(LOSES.terms, "<0", {cell: dict(r, metrics={k: v for k, v in r["metrics"].items()
                                                                  if k != "image_hits"})
                                           for cell, r in records.items()})
    assert not unpaired["paired"] and unpaired["hi"] - unpaired["lo"] > 2 * (part["hi"] - part["lo"])
    assert part["verdict"] == "reproduced" and unpaired["verdict"] == "inconclusive"
