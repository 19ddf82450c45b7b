#!/usr/bin/env bash
# What CI runs with the plugin installed (pip install -e examples/plugin): the LieRE encoding, which pebench
# does not ship, found through its entry point with no flag, at tiny sizes: listed, trained alone and with a
# shipped component, evaluated at 224 and 384 in every mode it supports, tuned, profiled, reported; and the
# package's own model (pebench_liere.model, through --model py:) evaluated, profiled and reported beside them.
set -euo pipefail
pebench="${1:-pebench}"
work="$(mktemp -d)"
data="synthetic:train=64,val=24"

"$pebench" list encodings > "$work/list.txt"
grep -q "^liere  LieRE" "$work/list.txt"
"$pebench" train -e liere --data "$data" --epochs 1 --batch-size 32 --out "$work/liere.safetensors"
"$pebench" train -e liere:block=2+peg --data "$data" --epochs 1 --batch-size 32 --out "$work/liere-peg.safetensors"
grep -q '"distribution": "pebench-liere"' "$work/liere.json"
for model in liere liere-peg; do
    "$pebench" eval -m "$work/$model.safetensors" --res 224 --res 384 --mode native --mode interp \
        --mode scale=0.5 --data "$data" --workers 0 --out "$work/eval.jsonl"
done
"$pebench" tune -m "$work/liere.safetensors" --res 384 --data "$data" --n 24 --tune-n 8 --points 3 --workers 0 \
    --out "$work/eval.jsonl"
python3 -c "import sys, torch; from pebench_liere.model import make; torch.save(make().state_dict(), sys.argv[1])" \
    "$work/lievit.pt"
outside="py:pebench_liere.model:make@$work/lievit.pt"
"$pebench" eval -m "$outside" --res 224 --res 384 --mode native --mode interp --mode scale=0.5 --data "$data" \
    --workers 0 --out "$work/eval.jsonl"
"$pebench" profile -e liere -e liere+peg --res 224 --res 384 --repeats 2 --batch-size 1 --out "$work/profile.jsonl"
"$pebench" profile -m "$outside" --res 224 --res 384 --repeats 2 --batch-size 1 --out "$work/profile.jsonl"
"$pebench" report "$work/eval.jsonl" --format md,json --out "$work/report"
python3 - "$work" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
records = [json.loads(line) for name in ("eval.jsonl", "profile.jsonl") for line in (work / name).open()]
outside = [r for r in records if r["model"]["source"] == "py"]
bad = [r for r in records if r["status"] != "ok" or r not in outside and "liere" not in r["model"]["plugins"]]
assert not bad, bad[0]
assert len(outside) == 8 and all(r["model"]["encoding"] == "liere (LieViT)" for r in outside), outside
assert all(r["overhead_vs_none"]["time"] > 0 for r in outside if r["kind"] == "profile")
print(f"plugin example: {len(records)} records, all ok; {len(outside)} of the outside model, the rest naming the plugin")
PY
