"""`pebench train` and `pebench finetune`: the zoo's recipe, resumable training, validation through the
same evaluation pass as `pebench eval`.

Enters: an encoding spec (or a trained model to fine-tune), the synthetic dataset, a recipe.
Leaves: a safetensors checkpoint and its JSON sidecar (:mod:`pebench.models.checkpoint`).
"""
