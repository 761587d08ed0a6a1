#!/usr/bin/env bash
# Which side of the VAE limits its samples: FCD/Test of molecules decoded from the aggregate posterior
# (one z ~ q(z|x) for each of N random training molecules) against molecules decoded from the prior,
# same weights, same decoding (relaxed SELFIES, invalid draws kept, T = 1). If decoding posterior codes
# scores far better, the prior (its holes) is what limits the samples; if about the same, the decoder.
#
#     bash scripts/posterior_fcd.sh [MODEL] [OUT] [PRIOR_SCORE]
#
# MODEL (checkpoints/molgen-moses.pt), OUT (out/posterior-fcd), PRIOR_SCORE: a `molgen score` report of
# N prior samples decoded the same way, e.g. model_card.sh's OUT/score-relaxed.json (default: sampled here).
# N=30000 by default (environment). About 7 min on 2 cores for the posterior side.
set -euo pipefail
MODEL=${1:-checkpoints/molgen-moses.pt}
OUT=${2:-out/posterior-fcd}
PRIOR_SCORE=${3:-}
N=${N:-30000}
PY=${PY:-.venv/bin/python}
MOLGEN=("$PY" -m molgen)
mkdir -p "$OUT"

"$PY" - "$N" "$OUT/seeds.smi" <<'EOF'
import sys

import numpy as np

from molgen.readers import read_column

smiles = read_column("data/moses/train.csv.gz")
index = np.sort(np.random.default_rng(0).choice(len(smiles), int(sys.argv[1]), replace=False))
with open(sys.argv[2], "w", encoding="utf-8") as handle:
    handle.write("\n".join(smiles[i] for i in index) + "\n")
EOF
"${MOLGEN[@]}" sample --model "$MODEL" --near "$OUT/seeds.smi" -n 1 --seed 0 --keep-invalid --constraints relaxed \
    --out "$OUT/posterior.csv"
"${MOLGEN[@]}" score "$OUT/posterior.csv" --out "$OUT/score-posterior.json" > /dev/null
if [ -z "$PRIOR_SCORE" ]; then
    "${MOLGEN[@]}" sample --model "$MODEL" -n "$N" --seed 0 --keep-invalid --constraints relaxed --out "$OUT/prior.csv"
    PRIOR_SCORE=$OUT/score-prior.json
    "${MOLGEN[@]}" score "$OUT/prior.csv" --out "$PRIOR_SCORE" > /dev/null
fi
"$PY" - "$OUT/score-posterior.json" "$PRIOR_SCORE" <<'EOF'
import json
import sys

posterior, prior = (json.load(open(path, encoding="utf-8")) for path in sys.argv[1:3])
print(f"{'':>24} {'posterior q(z|x)':>17} {'prior p(z)':>11}")
for key in ("valid", "FCD/Test", "FCD/TestSF", "SNN/Test", "Scaf/Test", "Frag/Test", "Filters", "Novelty"):
    print(f"{key:>24} {posterior[key]:>17.3f} {prior[key]:>11.3f}")
arom = [report["structure"]["aromatic_atom_fraction"]["set"] for report in (posterior, prior)]
print(f"{'aromatic-atom fraction':>24} {arom[0]:>17.3f} {arom[1]:>11.3f}")
EOF
