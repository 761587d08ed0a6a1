#!/usr/bin/env bash
# The LM baseline (configs/lm.yaml: the VAE's decoder without z) trained on the same data with the same
# batch and optimiser, stopped at every step of checkpoints/card/vae_history.csv (the VAE's shipped
# checkpoints), and measured there as scripts/model_card.sh measures the VAE: exact NLL on the same
# 200 MOSES test molecules (seed 0) and the MOSES metrics of 30,000 samples (seed 0, T = 1) decoded
# relaxed with invalid draws redrawn. Then the LM-vs-VAE curves and table (scripts/plot_lm_vs_vae.py).
#   bash scripts/lm_baseline.sh [LM_RUN] [OUT]
# Resumable: a step whose snapshot (LM_RUN/snapshots/stepN.pt) exists is not trained again; with
# LM_STATE=FILE (default checkpoints/molgen-moses-lm.state.pt) a missing LM_RUN starts from that state.
# The LM follows the VAE's learning-rate schedule (lr and cool-down, in molecules seen), read from
# VAE_STATE (default checkpoints/molgen-moses.state.pt).
set -euo pipefail
LM=${1:-runs/lm}
OUT=${2:-out/lm-baseline}
N=${N:-30000}
THREADS=${THREADS:-2}
LM_STATE=${LM_STATE:-checkpoints/molgen-moses-lm.state.pt}
HISTORY=${HISTORY:-checkpoints/card/vae_history.csv}
DATA=${DATA:-data/moses/train.csv.gz}
TEST=${TEST:-data/moses/test.csv.gz}
VAE_STATE=${VAE_STATE:-checkpoints/molgen-moses.state.pt}
EXTRA=${EXTRA:-}  # more `molgen train` flags (tiny settings for a dry run)
PY=${PY:-.venv/bin/python}
MOLGEN=${MOLGEN:-.venv/bin/molgen}
mkdir -p "$OUT" "$LM/snapshots"
schedule=()
if [ -f "$VAE_STATE" ]; then
  read -r -a schedule < <("$PY" -c "
import sys
from molgen.config import OptimConfig
from molgen.training_state import state_config
optim = {**vars(OptimConfig()), **state_config(sys.argv[1])['optim']}
keys = ('lr', 'cooldown_from_molecules', 'cooldown_molecules', 'lr_final')
print(' '.join(f\"--set optim.{k}={'null' if optim[k] is None else optim[k]}\" for k in keys))" "$VAE_STATE")
  echo "the LM follows the VAE's schedule (from $VAE_STATE): ${schedule[*]}"
else
  echo "warning: no VAE state at $VAE_STATE; the LM trains with its own config's learning rate" >&2
fi
step_of() { "$PY" -c "import torch,sys; print(torch.load(sys.argv[1], weights_only=True)['global_step'])" "$1"; }
for step in $(tail -n +2 "$HISTORY" | cut -d, -f1); do
  snap="$LM/snapshots/step$step.pt"
  [ -f "$snap" ] && continue
  if [ -f "$LM/checkpoints/last.ckpt" ]; then
    [ "$(step_of "$LM/checkpoints/last.ckpt")" -gt "$step" ] && { echo "$LM is past step $step; no snapshot there"; continue; }
    from=(--resume)
  elif [ -f "$LM_STATE" ] && [ "$(step_of "$LM_STATE")" -le "$step" ]; then
    from=(--resume-from "$LM_STATE")
  else
    from=(--kind lm --data "$DATA" --seed 0)
  fi
  # shellcheck disable=SC2086
  $MOLGEN train "${from[@]}" --out "$LM" --max-steps "$step" --threads "$THREADS" --no-progress \
    --set trainer.fcd_reference="$TEST" "${schedule[@]}" $EXTRA
  [ "$(step_of "$LM/checkpoints/last.ckpt")" -eq "$step" ] && cp "$LM/model.pt" "$snap"
done
for snap in "$LM"/snapshots/step*.pt; do
  name=$(basename "$snap" .pt)
  [ -f "$OUT/score-$name.json" ] && continue
  $MOLGEN evaluate --model "$snap" --data "$TEST" --on-invalid skip --n 200 --k 1 --out "$OUT/eval-$name.json"
  $MOLGEN sample --model "$snap" -n "$N" --seed 0 --constraints relaxed --out "$OUT/samples-$name.csv"
  $MOLGEN score "$OUT/samples-$name.csv" --out "$OUT/score-$name.json"
done
$PY scripts/plot_lm_vs_vae.py --lm-metrics "$LM/metrics.csv" --lm-figures "$OUT" --vae-history "$HISTORY" \
  "${PLOT:-checkpoints/card/lm_vs_vae.png}"
