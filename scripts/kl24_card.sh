#!/usr/bin/env bash
# Reproduce the figures of the --near model (checkpoints/README.md, "molgen-moses-kl24.pt") from its run.
#   bash scripts/kl24_card.sh [RUN] [OUT]
# The run continues the MOSES run with `--set objective.kl_target=24` (benchmarks/RESULTS.md, "KL target
# 12 vs 24 nats"). Steps: export RUN/checkpoints/last.ckpt (relaxed SELFIES), refit its prior (EM, 50,000
# training molecules) into checkpoints/molgen-moses-kl24.pt; evaluate it on 200 MOSES test molecules;
# sample 30,000 from its prior (seed 0) and score them; similarity of --near draws to their seeds over
# three sampling seeds.
set -euo pipefail
RUN=${1:-runs/kl24}
OUT=${2:-out/kl24-card}
PY=${PY:-.venv/bin/python}
MOLGEN=${MOLGEN:-.venv/bin/molgen}
MODEL=checkpoints/molgen-moses-kl24.pt
mkdir -p "$OUT"
$PY scripts/export_checkpoint.py "$RUN/checkpoints/last.ckpt" "$OUT/raw.pt" --constraints relaxed
$PY scripts/refit_prior.py "$OUT/raw.pt" data/moses/train.csv.gz "$MODEL" --n 50000
$MOLGEN evaluate --model "$MODEL" --data data/moses/test.csv.gz --on-invalid skip --n 200 --k 1000 --out "$OUT/eval.json"
$MOLGEN sample --model "$MODEL" -n 30000 --seed 0 --threads 2 --out "$OUT/samples.csv"
$MOLGEN score "$OUT/samples.csv" --out "$OUT/score.json"
for s in 0 1 2; do
  PYTHONPATH=. $PY benchmarks/near_similarity.py --model "$MODEL" --sampling-seed "$s" --no-record | tee "$OUT/near-seed$s.txt"
done
