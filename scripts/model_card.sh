#!/usr/bin/env bash
# Reproduce every figure of checkpoints/README.md from a training run (and, optionally, an LM run).
#   bash scripts/model_card.sh [VAE_RUN] [OUT] [LM_RUN]
# VAE_RUN is a run folder (its checkpoints/last.ckpt) or a checkpoint or packed state file (a GPU
# stretch's molgen-moses.state.pt: its weights, not its moments, are what is measured).
# Steps: export the VAE run's checkpoints/last.ckpt, refit its prior to the aggregate posterior (EM),
# write checkpoints/molgen-moses.pt (float16 weights) with relaxed SELFIES as its default decoding (invalid draws redrawn);
# sample 30,000 molecules (seed 0, T = 1) decoded strict, relaxed keeping the invalid draws, and with the
# default (relaxed, invalid draws redrawn: what `make run` samples); score the three sets; evaluate the model (and the LM) on
# 200 MOSES test molecules; the raw prior's likelihood. Tables: python scripts/model_card_table.py OUT
set -euo pipefail
VAE=${1:-runs/moses}
OUT=${2:-out/model-card}
LM=${3:-}
N_EVAL=${N_EVAL:-200}
K_EVAL=${K_EVAL:-1000}
N=${N:-30000}
DECODING=${DECODING:-relaxed}
PY=${PY:-.venv/bin/python}
MOLGEN=${MOLGEN:-.venv/bin/molgen}
mkdir -p "$OUT"
SOURCE=$VAE
[ -d "$VAE" ] && SOURCE=$VAE/checkpoints/last.ckpt
$PY scripts/export_checkpoint.py "$SOURCE" "$OUT/vae-raw.pt" --constraints "$DECODING"
$PY scripts/refit_prior.py "$OUT/vae-raw.pt" data/moses/train.csv.gz checkpoints/molgen-moses.pt --n 50000 --half
$MOLGEN sample -n "$N" --seed 0 --constraints strict --out "$OUT/samples-strict.csv"
$MOLGEN score "$OUT/samples-strict.csv" --out "$OUT/score-strict.json" --plots "$OUT/plots-strict"
$MOLGEN sample -n "$N" --seed 0 --constraints relaxed --keep-invalid --out "$OUT/samples-relaxed.csv"
$MOLGEN score "$OUT/samples-relaxed.csv" --out "$OUT/score-relaxed.json"
$MOLGEN sample -n "$N" --seed 0 --out "$OUT/samples-relaxed-redrawn.csv"
$MOLGEN score "$OUT/samples-relaxed-redrawn.csv" --out "$OUT/score-relaxed-redrawn.json" --plots "$OUT/plots-relaxed-redrawn"
$MOLGEN evaluate --model checkpoints/molgen-moses.pt --data data/moses/test.csv.gz --on-invalid skip \
  --n "$N_EVAL" --k "$K_EVAL" --out "$OUT/eval-vae.json" --plots "$OUT/plots-eval"
$MOLGEN evaluate --model "$OUT/vae-raw.pt" --data data/moses/test.csv.gz --on-invalid skip \
  --n "$N_EVAL" --k 100 --out "$OUT/eval-vae-raw.json"
if [ -n "$LM" ]; then
  $MOLGEN evaluate --model "$LM/model.pt" --data data/moses/test.csv.gz --on-invalid skip \
    --n "$N_EVAL" --k 1 --out "$OUT/eval-lm.json"
fi
$PY scripts/model_card_table.py "$OUT"
