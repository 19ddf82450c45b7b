"""A user's records set beside committed ones (the shipped zoo's, results/zoo or results/frontier), without
rerunning them: only reference cells measured on the same images are kept.

Two evaluation cells are comparable when they share the resolution and the data fingerprint (the dataset
spec and its seed, the split, the resolution, the crop and the renderer or folder listing), the number of
images asked for, the held-out tune part and where JPEGs were decoded (``--decode``). Reference cells at
resolutions the user's records do not have are left out; if no reference cell is comparable at all, the
error says which of those differ.
"""

from __future__ import annotations

from pebench.errors import PebenchError


def _images(record: dict) -> tuple:
    data = record["data"]
    return data.get("fingerprint"), data.get("requested"), data.get("holdout", 0), data.get("decode", "cpu")


def _difference(mine: dict, theirs: dict) -> str:
    """What makes two eval records incomparable, in words."""
    a, b = mine["data"], theirs["data"]
    for field, what, absent in (("spec", "data", 0), ("requested", "n (images asked for)", 0),
                                ("holdout", "tune_n (held out)", 0), ("decode", "decode", "cpu")):
        if a.get(field, absent) != b.get(field, absent):
            return f"{what}: {a.get(field, absent)} here vs {b.get(field, absent)} there"
    return "crop or renderer (same data spec and n, another fingerprint)"


def beside(records: list[dict], reference: list[dict], source: str) -> list[dict]:
    """The eval records of ``reference`` comparable with ``records`` (cells both have are taken from
    ``records``); a one-line error naming the difference when none is."""
    mine = [r for r in records if r["kind"] == "eval"]
    if not mine:
        raise PebenchError(f"--beside {source}: these results have no evaluation records to set beside it")
    wanted = {(r["res"], _images(r)) for r in mine}
    keys = {r.get("key") for r in records}
    theirs = [r for r in reference if r["kind"] == "eval" and r.get("key") not in keys]
    kept = [r for r in theirs if (r["res"], _images(r)) in wanted]
    if not kept:
        same_res = next((r for r in theirs if r["res"] == mine[0]["res"]), None)
        why = _difference(mine[0], same_res) if same_res else \
            f"resolutions: {sorted({str(r['res']) for r in mine})} here, none of them there"
        raise PebenchError(f"--beside {source}: no cell there was measured on the same images as these records "
                           f"({why}); rerun with its data, n and crop (its suite.json) to compare")
    return kept
