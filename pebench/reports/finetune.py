"""Fine-tuned models beside the zero-shot cells of the model they started from (`pebench finetune`)."""

from __future__ import annotations

from pebench.reports.tables import accuracy_cell

FINETUNE_NOTE = ("Each fine-tuned checkpoint at the resolution and in the mode it was fine-tuned in, beside its "
                 "starting model's zero-shot cells at that resolution (when the same results hold them): top-1 % with "
                 "its 95% Wilson interval; cost = training images seen and wall time of the fine-tune on the "
                 "machine that ran it.")


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
        zero_shot = [by_cell.get((base, r["res"], mode)) for mode in ("native", "interp")]
        rows.append([r["model"]["name"], finetune["from"], str(r["res"]), r["mode"], accuracy_cell(r, None),
                     *(accuracy_cell(cell, None) for cell in zero_shot),
                     f"{finetune['samples']:,}", f"{finetune['wall_s']:.0f}"])
    return header, rows
