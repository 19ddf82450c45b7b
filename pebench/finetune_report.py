"""Fine-tuned models beside the zero-shot cells of the model they started from (`pebench finetune`)."""

from __future__ import annotations

FINETUNE_NOTE = ("Each fine-tuned checkpoint at the resolution and in the mode it was fine-tuned in, beside its "
                 "starting model's zero-shot cells at that resolution (when the same results hold them): top-1 % with "
                 "its 95% Wilson interval; cost = training images seen and wall time of the fine-tune on the "
                 "machine that ran it.")


def _top1(record: dict | None) -> str:
    if record is None:
        return ""
    if record["status"] != "ok":
        return "n/a"
    m = record["metrics"]
    lo, hi = m["top1_ci95"]
    return f"{100 * m['top1']:.1f} ({100 * lo:.1f}-{100 * hi:.1f})"


def finetune_rows(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    evals = [r for r in records if r["kind"] == "eval"]
    # the start is found by its weights, however its path was written
    by_cell = {(r["model"].get("checkpoint_sha256"), r["res"], r["mode"]): r for r in evals}
    header = ["fine-tuned model", "from", "res", "start mode", "fine-tuned", "zero-shot native", "zero-shot interp",
              "images seen", "wall s"]
    rows = []
    for r in evals:
        finetune = r["model"].get("finetune")
        if not finetune or (r["res"], r["mode"]) != (finetune["res"], finetune["mode"]):
            continue
        base = finetune["from_sha256"]
        rows.append([r["model"]["name"], finetune["from"], str(r["res"]), r["mode"], _top1(r),
                     _top1(by_cell.get((base, r["res"], "native"))), _top1(by_cell.get((base, r["res"], "interp"))),
                     f"{finetune['samples']:,}", f"{finetune['wall_s']:.0f}"])
    return header, rows
