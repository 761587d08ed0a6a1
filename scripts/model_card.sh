#!/usr/bin/env bash
# Reproduce every figure of checkpoints/README.md from finished training runs.
#   bash scripts/model_card.sh [VAE_RUN] [LM_RUN] [OUT]
# Steps: take the VAE run's final model.pt, refit its prior to the aggregate posterior (EM), write
# checkpoints/molgen-moses.pt; evaluate VAE and LM on the MOSES test split; sample 30,000 molecules
# (seed 0, T = 1) decoded with strict and with relaxed SELFIES; score both sets; the raw prior's likelihood.
set -euo pipefail
VAE=${1:-runs/vae-strict}
LM=${2:-runs/lm-strict}
OUT=${3:-out/model-card}
N_EVAL=${N_EVAL:-200}
K_EVAL=${K_EVAL:-1000}
PY=.venv/bin/python
MOLGEN=.venv/bin/molgen
mkdir -p "$OUT"
cp "$VAE/model.pt" "$OUT/vae-raw.pt"
$PY scripts/refit_prior.py "$OUT/vae-raw.pt" data/moses/train.csv.gz checkpoints/molgen-moses.pt --n 50000
cp "$LM/model.pt" "$OUT/lm.pt"
$MOLGEN sample -n 30000 --seed 0 --out "$OUT/samples-strict.csv"
$MOLGEN evaluate --model checkpoints/molgen-moses.pt --data data/moses/test.csv.gz --on-invalid skip \
  --n "$N_EVAL" --k "$K_EVAL" --out "$OUT/eval-vae.json" --plots "$OUT/plots-eval"
$MOLGEN evaluate --model "$OUT/lm.pt" --data data/moses/test.csv.gz --on-invalid skip \
  --n "$N_EVAL" --k 1 --out "$OUT/eval-lm.json"
$MOLGEN score "$OUT/samples-strict.csv" --out "$OUT/score-strict.json" --plots "$OUT/plots-strict"
$MOLGEN sample -n 30000 --seed 0 --constraints relaxed --out "$OUT/samples-relaxed.csv"
$MOLGEN score "$OUT/samples-relaxed.csv" --out "$OUT/score-relaxed.json" --plots "$OUT/plots-relaxed"
$MOLGEN evaluate --model "$OUT/vae-raw.pt" --data data/moses/test.csv.gz --on-invalid skip \
  --n "$N_EVAL" --k 100 --out "$OUT/eval-vae-raw.json"
