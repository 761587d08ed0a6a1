#!/usr/bin/env bash
# The LM baseline's figures at matched training molecules, as scripts/model_card.sh takes the VAE's:
# exact NLL on the same 200 MOSES test molecules (seed 0) and the MOSES metrics of 30,000 samples
# (seed 0, T = 1) decoded relaxed with invalid draws redrawn (the shipped VAE's default), for every
# model snapshot SNAPS/stepN.pt of an LM run; then the LM-vs-VAE curves (scripts/plot_lm_vs_vae.py).
#   bash scripts/lm_baseline.sh [LM_RUN] [SNAPS] [OUT]
set -euo pipefail
LM=${1:-runs/lm}
SNAPS=${2:-runs/lm-snap}
OUT=${3:-out/lm-baseline}
N=${N:-30000}
PY=${PY:-.venv/bin/python}
MOLGEN=${MOLGEN:-.venv/bin/molgen}
mkdir -p "$OUT"
for snap in "$SNAPS"/step*.pt; do
  name=$(basename "$snap" .pt)
  [ -f "$OUT/score-$name.json" ] && continue
  $MOLGEN evaluate --model "$snap" --data data/moses/test.csv.gz --on-invalid skip --n 200 --k 1 --out "$OUT/eval-$name.json"
  $MOLGEN sample --model "$snap" -n "$N" --seed 0 --constraints relaxed --out "$OUT/samples-$name.csv"
  $MOLGEN score "$OUT/samples-$name.csv" --out "$OUT/score-$name.json"
done
$PY scripts/plot_lm_vs_vae.py --lm-metrics "$LM/metrics.csv" --lm-figures "$OUT" checkpoints/card/lm_vs_vae.png
