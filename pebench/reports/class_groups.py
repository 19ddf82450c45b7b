"""Accuracy by class group, as the terminal table and the report show it.

A dataset may group its classes (``class_groups``: name -> class indices). The synthetic data has
two: "where" (its position classes, told apart only by where the red disk sits, so their accuracy
says whether a model learned position) and "what" (told apart by shape and colour). Evaluation
records carry each group's top-1 in ``metrics.groups`` and the group's classes in
``data.class_groups`` (:mod:`pebench.results`). Records without groups (an image folder, or records
written before groups existed) show none: every helper here then returns nothing.
"""

from __future__ import annotations

from collections.abc import Callable

#: what the known groups measure, for titles, notes and captions
GROUP_MEANING = {"where": "told apart only by position", "what": "told apart by shape and colour"}
#: the group whose classes differ only in position: a position-blind model is at chance among them
POSITION_GROUP = "where"


def group_names(records: list[dict]) -> list[str]:
    """The class groups of the evaluation records' metrics, ordered by their first class (synthetic: where,
    then what); records are stored with sorted keys, so the order they were written in is not kept."""
    first_class = {name: min(classes, default=0) for r in records if r["kind"] == "eval"
                   for name, classes in ((r.get("data") or {}).get("class_groups") or {}).items()}
    names = dict.fromkeys(name for r in records if r["kind"] == "eval" and r["status"] == "ok"
                          for name in (r["metrics"].get("groups") or {}))
    return sorted(names, key=lambda name: first_class.get(name, 0))


def group_metrics(name: str) -> Callable[[dict], dict | None]:
    """A record -> its metrics of group ``name`` ({n, correct_top1, top1, top1_ci95}); None without them."""
    return lambda record: ((record.get("metrics") or {}).get("groups") or {}).get(name)


def describe(name: str, records: list[dict] = ()) -> str:
    """'where (classes 0-2, told apart only by position)': the group, its classes (from the records'
    ``data.class_groups``) and what it measures."""
    classes = next((r["data"]["class_groups"][name] for r in records
                    if name in ((r.get("data") or {}).get("class_groups") or {})), None)
    meaning = GROUP_MEANING.get(name)
    if classes:
        return f"{name} ({_span(classes)}" + (f", {meaning})" if meaning else ")")
    return f"{name} ({meaning})" if meaning else name


def _span(classes: list[int]) -> str:
    if len(classes) > 2 and classes == list(range(classes[0], classes[-1] + 1)):
        return f"classes {classes[0]}-{classes[-1]}"
    return "classes " + ", ".join(map(str, classes))


def group_summary(metrics: dict | None, class_groups: dict | None = None) -> str:
    """'where 93.1 / what 99.9': one cell's top-1 % per class group ('' when it has no groups), ordered by
    each group's first class when ``class_groups`` (the record's ``data.class_groups``) is given."""
    groups = (metrics or {}).get("groups") or {}
    first = {name: min(classes, default=0) for name, classes in (class_groups or {}).items()}
    return " / ".join(f"{name} " + ("-" if groups[name]["top1"] is None else f"{100 * groups[name]['top1']:.1f}")
                      for name in sorted(groups, key=lambda name: first.get(name, 0)))


def position_blind_cap(record: dict, group: str | None = None) -> float | None:
    """The best top-1 a model without position information can reach on this record's images: every
    class right except those of :data:`POSITION_GROUP`, where it is at chance (synthetic: 70% + 30% / 3
    = 80%). With ``group``, the cap on that group alone (the position group's chance; None for others).
    None when the record has no position group."""
    groups = ((record.get("metrics") or {}).get("groups") or {})
    classes = ((record.get("data") or {}).get("class_groups") or {}).get(POSITION_GROUP)
    if POSITION_GROUP not in groups or not classes or not record["metrics"].get("n"):
        return None
    chance = 1 / len(classes)
    if group is not None:
        return chance if group == POSITION_GROUP else None
    share = groups[POSITION_GROUP]["n"] / record["metrics"]["n"]
    return 1 - share * (1 - chance)
