"""Published findings beside what pebench measures on its shipped zoo (torch-free).

A finding is a qualitative claim of the seed papers and anchors (``../shared/reference.md``,
:mod:`pebench.reports.published`), the published numbers behind it (ImageNet figures of much larger models,
always labelled "published"), and a measured quantity: a linear combination ``sum c_i p_i`` of zoo
cells' top-1 proportions ``p_i = correct_top1_i / n_i`` (cell = model, res, mode), e.g.
``ape interp 384 - ape interp 224 < 0`` for "learned APE, interpolated, loses accuracy at 384".

Statistics. The estimate is the plain ``sum c_i p_i``. When every cell of a comparison scored the same
images and recorded each image's hit (``metrics.image_hits``), the comparison is paired: per image
``d = sum c_i hit_i``, and the interval is the adjusted Wald interval of the mean of ``d``
(:func:`paired_interval`), much narrower than the independent one because the cells' errors on the
same images are correlated. Otherwise (records written before image hits existed, cells from
different runs or data) its 95% interval is Agresti-Caffo's adjusted
Wald interval: each cell gets one extra hit and one extra miss, ``p~_i = (x_i + 1) / (n_i + 2)``; the
interval is ``sum c_i p~_i +- 1.96 sqrt(sum c_i^2 p~_i (1 - p~_i) / (n_i + 2))`` (a cell used twice has
its coefficients added first). This treats the cells as independent. The cells of one run score the
same val images, and scores on the same images are positively correlated, so the true variance of a
difference is smaller: the interval is conservative (too wide, never too narrow). Cells from
different results files (the zoo's full split, the frontier's 70 held-out images) are independent.

Verdicts, from the interval in points: a "loses" (``< 0``) or "gains / beats" (``> 0``) claim is
reproduced when the interval lies entirely on the claimed side of 0, not reproduced when it lies
entirely on the other side. A "holds or gains" (``>= 0``) claim is reproduced when the lower end is at
least -1 point (:data:`HOLD_MARGIN`: it holds within one point), not reproduced when the upper end is
below 0 (and the lower end below -1). Anything else is inconclusive. A claim made of several
comparisons (LookHere leads every other model) is reproduced only when all are, not reproduced when
any is. "not measured": a needed cell is missing or not applicable, or one model's cells come from
different checkpoints, or the cells from different data (the cell is named).

Left out: "RoPE-Axial at new positions loses a little at 384": RoPE-ViT's published figures differ in
sign between sizes (ViT-S 80.9 -> 80.0, ViT-B 83.6 -> 83.9); Mixed vs Axial, where both agree, is in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pebench.resolution import Label, sort_key
from pebench.results import unpack_hits

Z95 = 1.959963984540054
HOLD_MARGIN = 1.0  # points: a ">= 0" claim "holds" when the interval's lower end is at least -1 point
TRAIN_RES = 224
Cell = tuple[str, Label, str]  # (model, res, mode)
Terms = tuple[tuple[float, Cell], ...]
#: the mode each model is compared in where a claim follows LookHere's protocol (APE, sin-cos and the BEiT
#: table interpolated; ALiBi and RoPE scale tuned per resolution; FIRE with its built-in progressive
#: interpolation; everything else, LookHere included, at its positions as they are)
LOOKHERE_PROTOCOL = {"ape": "interp", "ape_random": "interp", "sincos": "interp", "relpos_table": "interp",
                     "alibi": "tuned", "rope_axial": "tuned", "rope_mixed": "tuned", "fire": "interp"}


@dataclass(frozen=True)
class Finding:
    id: str
    claim: str
    source: str  # the published numbers that support it and why these modes
    terms: Terms  # the measured quantity sum c * top1; with versus_all: the leader's cell alone
    sign: str  # "<0" loses, ">0" gains / beats, ">=0" holds or gains
    versus_all: bool = False  # compare the leader with every other model at its resolution


def change(model: str, mode: str, res: int, base_mode: str | None = None) -> Terms:
    """``model`` at ``res`` minus the same model at 224 (in ``base_mode``, default the same mode)."""
    return ((1.0, (model, res, mode)), (-1.0, (model, TRAIN_RES, base_mode or mode)))


def _minus(a: Terms, b: Terms) -> Terms:
    return a + tuple((-c, cell) for c, cell in b)


FINDINGS: tuple[Finding, ...] = (
    Finding("ape-interp-384", "Learned APE, interpolated, loses accuracy at 384",
            "CPVT Table 2, DeiT-tiny: published 72.2 -> 71.2; RoPE-ViT ViT-S: published 80.4 -> 79.4; "
            "mode interp: both resample the grid bicubically, as pebench does; ape_random: DeiT's truncated-normal "
            "start, as theirs", change("ape_random", "interp", 384), "<0"),
    Finding("ape-interp-512", "Learned APE, interpolated, loses accuracy at 512",
            "CPVT Table 2, DeiT-tiny: published 72.2 -> 65.9 (u, unverified); LookHere ViT-B 1D learned: "
            "published 79.45 -> 75.89; mode interp; ape_random: DeiT's random start",
            change("ape_random", "interp", 512), "<0"),
    Finding("sincos-interp-384", "Sin-cos, interpolated, loses accuracy at 384",
            "CPVT Table 2, DeiT-tiny 2D sin-cos: published 72.3 -> 70.8 (how sin-cos met 384 is not stated); "
            "LookHere ViT-B, sin-cos interpolated: published 79.05 -> 78.56; mode interp",
            change("sincos", "interp", 384), "<0"),
    *(Finding(f"sincos-native-vs-interp-{r}",
              f"Sin-cos at new integer positions does worse at {r} than with positions scaled by G0/G",
              "no anchor measures sin-cos at new integer positions; the protocols imply it: ViT interpolates "
              "because 'the pre-trained position embeddings may no longer be meaningful' (seed 002), LookHere "
              "interpolates sin-cos (published 79.05 -> 78.56 at 384, 75.43 at 512); modes native vs interp",
              ((1.0, ("sincos", r, "native")), (-1.0, ("sincos", r, "interp"))), "<0") for r in (384, 512)),
    Finding("peg-x5-384", "PEG (after blocks 0-4) holds or gains at 384 without fine-tuning",
            "CPVT Table 2, CPVT-Ti PEG x5: published 73.4 -> 74.2; mode native (a PEG has nothing to interpolate)",
            change("peg_x5", "native", 384), ">=0"),
    Finding("peg-384", "PEG (block 0) holds or gains at 384 without fine-tuning",
            "CPVT Table 2, CPVT-Ti: published 72.4 (u) -> 73.2 (u); CPVT-S: published 79.9 (u) -> 80.4 (u); "
            "mode native", change("peg", "native", 384), ">=0"),
    Finding("peg-beats-ape-384", "PEG beats interpolated learned APE at 384",
            "CPVT Table 2: published CPVT-Ti (PEG x5) 74.2 vs DeiT-tiny APE 71.2 (already 73.4 vs 72.2 at 224); "
            "modes PEG native, APE interp; ape_random: DeiT's random start",
            ((1.0, ("peg_x5", 384, "native")), (-1.0, ("ape_random", 384, "interp"))), ">0"),
    Finding("peg-change-beats-ape-384", "PEG's change from 224 to 384 is better than interpolated APE's",
            "CPVT Table 2: published PEG x5 +0.8 (73.4 -> 74.2) vs APE -1.0 (72.2 -> 71.2); "
            "modes PEG native, APE interp",
            _minus(change("peg_x5", "native", 384), change("ape_random", "interp", 384)), ">0"),
    Finding("rope-mixed-384", "RoPE-Mixed at new integer positions gains at 384",
            "RoPE-ViT: published ViT-S 80.9 -> 81.8, ViT-B 83.8 -> 84.4; mode native (RoPE-ViT extrapolates: "
            "positions as they are)", change("rope_mixed", "native", 384), ">0"),
    Finding("rope-mixed-vs-axial-384", "RoPE-Mixed does better than RoPE-Axial at 384 (new integer positions)",
            "RoPE-ViT: published ViT-S 81.8 vs 80.0, ViT-B 84.4 vs 83.9 (80.9 / 83.6-83.8 at 224); mode native",
            ((1.0, ("rope_mixed", 384, "native")), (-1.0, ("rope_axial", 384, "native"))), ">0"),
    Finding("alibi-384", "ALiBi, scale tuned, gains at 384",
            "LookHere ViT-B 2D ALiBi: published 79.54 -> 80.38; mode tuned (slope scale tuned per resolution), "
            "vs native at 224", change("alibi", "tuned", 384, "native"), ">0"),
    Finding("relpos-table-vs-alibi-1024", "The BEiT-style relative table degrades more at 1024 than ALiBi",
            "LookHere ViT-B: published RPE learned 79.86 -> 36.80 vs 2D ALiBi 79.54 -> 63.62; modes: table "
            "interp (BEiT's table interpolation), ALiBi tuned (vs native at 224)",
            _minus(change("relpos_table", "interp", 1024), change("alibi", "tuned", 1024, "native")), "<0"),
    Finding("lookhere-leads-1024", "LookHere leads every other encoding at 1024",
            "LookHere ViT-B: published LookHere-45 73.15 vs 2D ALiBi 63.62, 1D learned 55.67, sin-cos 53.71, "
            "RoPE 51.41, RPE learned 36.80; LookHere native, others in its protocol's mode (APE / sin-cos / "
            "table interp, ALiBi / RoPE tuned, FIRE interp, the rest native)",
            ((1.0, ("lookhere", 1024, "native")),), ">0", versus_all=True),
    Finding("fire-vs-rope-1024", "FIRE beats RoPE at 1024",
            "2026 extrapolation study, ViT-Tiny, ImageNet-100 (abstract only): published FIRE 63.1 vs RoPE 18.9; "
            "protocol not stated: FIRE interp (its built-in progressive interpolation), RoPE-Axial native",
            ((1.0, ("fire", 1024, "interp")), (-1.0, ("rope_axial", 1024, "native"))), ">0"),
    Finding("no-pe-loses-224", "Without a position encoding accuracy drops (at 224)",
            "CPVT / DeiT, DeiT-tiny: published none 68.2 vs learned APE 72.2; mode native",
            ((1.0, ("none", 224, "native")), (-1.0, ("ape_random", 224, "native"))), "<0"),
    Finding("shaw-below-ape-224", "Shaw's relative encoding trails learned APE (at 224)",
            "CPVT, DeiT-tiny: published + RPE (Shaw, K=8) 70.5 vs learned APE 72.2; mode native",
            ((1.0, ("shaw", 224, "native")), (-1.0, ("ape_random", 224, "native"))), "<0"),
)


def cell_index(records: list[dict]) -> dict[Cell, dict]:
    """(model, res, mode) -> eval record; where several records cover a cell (several results files), the one
    with the larger n wins (an ok record beats a not-applicable one; on a tie the later one)."""
    index: dict[Cell, dict] = {}

    def size(record: dict) -> int:
        return ((record.get("metrics") or {}).get("n") or 0) if record["status"] == "ok" else -1

    for r in records:
        if r.get("kind", "eval") != "eval":
            continue
        cell = (r["model"]["name"], r["res"], r["mode"])
        if cell not in index or size(r) >= size(index[cell]):
            index[cell] = r
    return index


def interval(terms: list[tuple[float, int, int]]) -> tuple[float, float, float]:
    """(estimate, lo, hi) of ``sum c * x / n`` over (c, x hits, n images), Agresti-Caffo adjusted (see the
    module docstring), in proportion units."""
    estimate = sum(c * x / n for c, x, n in terms)
    adjusted = [(c, (x + 1) / (n + 2), n + 2) for c, x, n in terms]
    centre = sum(c * p for c, p, _ in adjusted)
    half = Z95 * math.sqrt(sum(c * c * p * (1 - p) / m for c, p, m in adjusted))
    return estimate, centre - half, centre + half


def paired_interval(terms: list[tuple[float, list[bool]]]) -> tuple[float, float, float]:
    """(estimate, lo, hi) of ``sum c * p`` from the cells' hits on the same images, in proportion units:
    per image d = sum c * hit; the interval is the adjusted Wald interval of the mean of d with two
    pseudo-images at d = +s and d = -s (s = the largest |d| any image can have) added, which for one
    difference of two cells is Bonett and Price's adjusted interval for paired proportions (one extra
    discordant pair each way)."""
    n = len(terms[0][1])
    values = [sum(c * hits[i] for c, hits in terms) for i in range(n)]
    spread = max(sum(c for c, _ in terms if c > 0), -sum(c for c, _ in terms if c < 0))  # the largest |d|
    estimate = sum(values) / n
    adjusted = values + [spread, -spread]
    centre = sum(adjusted) / (n + 2)
    variance = sum((v - centre) ** 2 for v in adjusted) / (n + 2)
    half = Z95 * math.sqrt(variance / (n + 2))
    return estimate, centre - half, centre + half


def _shared_images(used: list[tuple[Cell, dict]]) -> bool:
    """Whether every cell scored the same images of the same data, each image's hit recorded."""
    def images(record: dict) -> tuple:
        data = record.get("data") or {}
        return (data.get("spec"), data.get("split"), data.get("holdout", 0), data.get("requested"),
                record["metrics"]["n"])

    return (all("image_hits" in r["metrics"] for _, r in used)
            and len({images(r) for _, r in used}) == 1)


def verdict(sign: str, lo: float, hi: float) -> str:
    """The verdict of one comparison from its 95% interval in points (see the module docstring)."""
    if sign == "<0":
        return "reproduced" if hi < 0 else "not reproduced" if lo > 0 else "inconclusive"
    if sign == ">0":
        return "reproduced" if lo > 0 else "not reproduced" if hi < 0 else "inconclusive"
    if sign == ">=0":
        return "reproduced" if lo >= -HOLD_MARGIN else "not reproduced" if hi < 0 else "inconclusive"
    raise ValueError(f"unknown sign {sign!r}")


def _name(cell: Cell) -> str:
    return f"{cell[0]} {cell[2]} {cell[1]}"


def compare(terms: Terms, sign: str, index: dict[Cell, dict]) -> dict:
    """One comparison: {verdict, estimate, lo, hi (points), cells (text), ns, missing}."""
    coefficients: dict[Cell, float] = {}
    for c, cell in terms:
        coefficients[cell] = coefficients.get(cell, 0.0) + c
    missing, used = [], []
    for cell in coefficients:
        record = index.get(cell)
        if record is None:
            missing.append(f"{_name(cell)} (no record)")
        elif record["status"] != "ok" or not (record.get("metrics") or {}).get("n"):
            missing.append(f"{_name(cell)} (n/a: {record.get('reason') or 'no images'})")
        else:
            used.append((cell, record))
    for model in dict.fromkeys(cell[0] for cell, _ in used):
        mine = [r for cell, r in used if cell[0] == model]
        if len({r["model"].get("checkpoint_sha256") for r in mine}) > 1:
            missing.append(f"{model} (cells from different checkpoints)")
    if len({((r.get("data") or {}).get("spec"), (r.get("data") or {}).get("split")) for _, r in used}) > 1:
        missing.append("cells from different data")
    if missing:
        return {"verdict": "not measured", "missing": missing, "cells": "", "ns": []}
    weighted = [(cell, r) for cell, r in used if coefficients[cell]]
    paired = _shared_images(weighted)
    if paired:
        estimate, lo, hi = paired_interval([(coefficients[cell], unpack_hits(r["metrics"]["image_hits"],
                                                                             r["metrics"]["n"]))
                                            for cell, r in weighted])
    else:
        estimate, lo, hi = interval([(coefficients[cell], r["metrics"]["correct_top1"], r["metrics"]["n"])
                                     for cell, r in weighted])
    return {"verdict": verdict(sign, 100 * lo, 100 * hi), "estimate": 100 * estimate, "lo": 100 * lo,
            "hi": 100 * hi, "cells": _cells_text(used), "ns": [r["metrics"]["n"] for _, r in used], "missing": [],
            "paired": paired}


def _cells_text(used: list[tuple[Cell, dict]]) -> str:
    """e.g. "ape interp: 224 97.7 -> 384 96.8", "sincos 384: native 81.2 vs interp 85.6"."""
    texts = []
    for model in dict.fromkeys(cell[0] for cell, _ in used):
        cells = sorted(((c, 100 * r["metrics"]["top1"]) for c, r in used if c[0] == model),
                       key=lambda x: sort_key(x[0][1]))
        if len({c[2] for c, _ in cells}) == 1:
            texts.append(f"{model} {cells[0][0][2]}: " + " -> ".join(f"{c[1]} {v:.1f}" for c, v in cells))
        elif len({c[1] for c, _ in cells}) == 1:
            texts.append(f"{model} {cells[0][0][1]}: " + " vs ".join(f"{c[2]} {v:.1f}" for c, v in cells))
        else:
            texts.append(f"{model}: " + " -> ".join(f"{c[1]} {c[2]} {v:.1f}" for c, v in cells))
    return " vs ".join(texts)


def evaluate(finding: Finding, index: dict[Cell, dict]) -> tuple[str, list[tuple[Cell | None, dict]]]:
    """(verdict, [(the other model's cell for ``versus_all``, else None; comparison)]) of one finding."""
    if not finding.versus_all:
        part = compare(finding.terms, finding.sign, index)
        return part["verdict"], [(None, part)]
    (_, leader), = finding.terms
    others = [(m, leader[1], LOOKHERE_PROTOCOL.get(m, "native"))
              for m in dict.fromkeys(m for m, res, _ in index if res == leader[1] and m != leader[0])]
    parts = [(other, compare(((1.0, leader), (-1.0, other)), finding.sign, index)) for other in others]
    verdicts = [p["verdict"] for _, p in parts]
    if not parts:
        return "not measured", [(None, {"verdict": "not measured", "missing": [f"any other model at {leader[1]}"]})]
    if "not measured" in verdicts:
        return "not measured", parts
    if all(v == "reproduced" for v in verdicts):
        return "reproduced", parts
    return ("not reproduced" if "not reproduced" in verdicts else "inconclusive"), parts


def _measured_text(finding: Finding, parts: list[tuple[Cell | None, dict]], index: dict[Cell, dict]) -> str:
    def ci(p: dict) -> str:
        return f"{p['estimate']:+.1f} ({p['lo']:+.1f} to {p['hi']:+.1f}{', paired' if p['paired'] else ''})"

    texts = []
    if finding.versus_all and (leader := index.get(finding.terms[0][1])) and leader["status"] == "ok":
        texts.append(f"{_name(finding.terms[0][1])} {100 * leader['metrics']['top1']:.1f}")
    for other, p in parts:
        if p["missing"]:
            texts.append(("vs " if other else "") + "missing " + ", ".join(p["missing"]))
        elif other:
            texts.append(f"vs {other[0]} {other[2]} {100 * index[other]['metrics']['top1']:.1f}: {ci(p)} "
                         f"{p['verdict']}")
        else:
            texts.append(f"{ci(p)}; {p['cells']}")
    return "; ".join(texts)


def findings_table(records: list[dict], findings: tuple[Finding, ...] = FINDINGS) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per finding (id, claim, published source, measured change in points with its
    95% interval and the cells used, n, verdict), from eval records of one or several results files."""
    index = cell_index(records)
    rows = []
    for finding in findings:
        result, parts = evaluate(finding, index)
        ns = sorted({n for _, p in parts for n in p.get("ns", [])})
        rows.append([finding.id, f"{finding.claim} ({finding.sign.replace('0', ' 0')})", finding.source,
                     _measured_text(finding, parts, index), "/".join(map(str, ns)) or "-", result])
    return ["finding", "claim (claimed sign of the measured quantity)", "source (published)",
            "measured: points, estimate (95% CI); cells, top-1 %", "n", "verdict"], rows


FINDINGS_NOTE = (
    "Each claim from the papers beside the same comparison on this zoo. Published numbers are ImageNet figures of "
    "much larger models (DeiT-tiny to ViT-B, 150-300 epochs); measured ones are this zoo of micro models on the "
    "synthetic task, so agreement or disagreement says how the encodings behave here, not whether a paper is right. "
    "Measured: a change or difference in top-1 points, then its 95% interval: 'paired' when every cell scored the "
    "same images and kept each image's hit (the adjusted Wald interval of the per-image difference), otherwise "
    "Agresti-Caffo's (cells treated as independent although they may share val images: conservative). Verdicts: "
    "reproduced = the interval lies entirely on the claimed side of 0 (for 'holds or gains', >= 0: its lower end "
    f"is at least -{HOLD_MARGIN:g} point); not reproduced = it lies entirely on the other side (for >= 0: its upper "
    "end is below 0 and the loss may exceed the margin); inconclusive = otherwise; not measured = a needed cell is "
    "missing (named). Where one cell was measured in several results files, the one with more images is used.")
