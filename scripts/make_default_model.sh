#!/usr/bin/env bash
# Rebuild the built-in model (src/itemrep/data/default_model.json) by the protocol of
# bench/shopee.py: the Shopee label groups are split 50 / 20 / 30 % into fit / select / report
# (bench/protocol.py, seed 0); α, β, γ are fitted with `itemrep fit` on *fit*, τ is chosen on
# *select* (`--select`), and the *report* groups are never read. Needs $ITEMREP_DATA/shopee (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${ITEMREP_DATA:-../shared/data}
TMP=$(mktemp -d)
.venv/bin/python - "$DATA/shopee/train.csv" "$TMP" <<'PY'
import sys
import pandas as pd
sys.path.insert(0, "bench")
from protocol import split_groups
df = pd.read_csv(sys.argv[1], dtype=str, keep_default_na=False).drop(columns=["image"])
fit, select, _report = split_groups(df["label_group"].tolist(), seed=0)
df.iloc[fit].to_csv(f"{sys.argv[2]}/fit.csv", index=False)
df.iloc[select].to_csv(f"{sys.argv[2]}/select.csv", index=False)
PY
.venv/bin/itemrep fit "$TMP/fit.csv" --select "$TMP/select.csv" --label-col label_group --id-col posting_id \
  --phash-col image_phash --model-dir "$TMP/model" --quiet
mkdir -p src/itemrep/data
# the built-in model carries α, β, γ and τ only: `dedup` fits the unsupervised stages on each catalog
.venv/bin/python -c "import json,sys; m=json.load(open(sys.argv[1])); m['stages']=None; open(sys.argv[2],'w').write(json.dumps(m, indent=2, default=str))" \
  "$TMP/model/model.json" src/itemrep/data/default_model.json
echo "wrote src/itemrep/data/default_model.json"
