#!/usr/bin/env bash
# Rebuild the built-in model (src/itemrep/data/default_model.json): α, γ and τ fitted with
# `itemrep fit` on the Shopee development split (the 70 % of label groups that bench/shopee.py
# fits on with seed 0; its 30 % stays unseen). Needs $ITEMREP_DATA/shopee (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${ITEMREP_DATA:-../shared/data}
TMP=$(mktemp -d)
.venv/bin/python - "$DATA/shopee/train.csv" "$TMP/dev.csv" <<'PY'
import sys
import numpy as np
import pandas as pd
from sklearn.model_selection import GroupShuffleSplit
df = pd.read_csv(sys.argv[1], dtype=str, keep_default_na=False)
tr, _ = next(GroupShuffleSplit(n_splits=1, train_size=0.7, random_state=0).split(np.zeros(len(df)), groups=df["label_group"]))
df.iloc[np.sort(tr)].drop(columns=["image"]).to_csv(sys.argv[2], index=False)
PY
.venv/bin/itemrep fit "$TMP/dev.csv" --label-col label_group --id-col posting_id --model-dir "$TMP/model" --quiet
mkdir -p src/itemrep/data
# the built-in model carries α, β, γ and τ only: `dedup` fits the unsupervised stages on each catalog
.venv/bin/python -c "import json,sys; m=json.load(open(sys.argv[1])); m['stages']=None; open(sys.argv[2],'w').write(json.dumps(m, indent=2, default=str))" \
  "$TMP/model/model.json" src/itemrep/data/default_model.json
echo "wrote src/itemrep/data/default_model.json"
