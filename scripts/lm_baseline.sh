#!/usr/bin/env bash
# The LM baseline (configs/lm.yaml: the VAE's decoder without z) trained on the same data with the same
# batch and optimiser, stopped at every step of checkpoints/card/vae_history.csv (the VAE's shipped
# checkpoints), and measured there as scripts/model_card.sh measures the VAE: exact NLL on the same
# 200 MOSES test molecules (seed 0) and the MOSES metrics of 30,000 samples (seed 0, T = 1) decoded
# relaxed with invalid draws redrawn. Then the LM-vs-VAE curves and table (scripts/plot_lm_vs_vae.py).
#   bash scripts/lm_baseline.sh [LM_RUN] [OUT]
# Resumable: a step whose snapshot (LM_RUN/snapshots/stepN.pt) exists is not trained again; with
# LM_STATE=FILE (default checkpoints/molgen-moses-lm.state.pt) a missing LM_RUN starts from that state,
# and steps before it are skipped (their figures are kept in LM_HISTORY, checkpoints/card/lm_history.csv).
# Up to each step the LM follows the VAE's learning-rate schedule (lr and cool-downs, in molecules
# seen) as it was then: read from the VAE state (VAE_STATE) committed at that history row's commit.
set -euo pipefail
LM=${1:-runs/lm}
OUT=${2:-out/lm-baseline}
N=${N:-30000}
THREADS=${THREADS:-2}
LM_STATE=${LM_STATE:-checkpoints/molgen-moses-lm.state.pt}
HISTORY=${HISTORY:-checkpoints/card/vae_history.csv}
LM_HISTORY=${LM_HISTORY:-checkpoints/card/lm_history.csv}
DATA=${DATA:-data/moses/train.csv.gz}
TEST=${TEST:-data/moses/test.csv.gz}
VAE_STATE=${VAE_STATE:-checkpoints/molgen-moses.state.pt}
EXTRA=${EXTRA:-}  # more `molgen train` flags (tiny settings for a dry run)
PY=${PY:-.venv/bin/python}
MOLGEN=${MOLGEN:-.venv/bin/molgen}
mkdir -p "$OUT" "$LM/snapshots"
# The VAE's learning-rate schedule up to a history row: the optim keys of the VAE state committed at
# that row's commit (the schedule changed between rows); VAE_STATE where that commit is not in git.
schedule_at() {
  local state=$VAE_STATE tmp
  tmp=$(mktemp)
  if git show "$1:$VAE_STATE" > "$tmp" 2>/dev/null; then state=$tmp; else
    echo "warning: no $VAE_STATE at commit $1; the LM takes $VAE_STATE's schedule" >&2; fi
  "$PY" -c "
import sys
from molgen.config import OptimConfig
from molgen.training_state import state_config
optim = {**vars(OptimConfig()), **state_config(sys.argv[1])['optim']}
keys = ('lr', 'cooldown_from_molecules', 'cooldown_molecules', 'lr_final')
print(' '.join(f\"--set optim.{k}={'null' if optim[k] is None else optim[k]}\" for k in keys))" "$state"
  rm -f "$tmp"
}
step_of() { "$PY" -c "import torch,sys; print(torch.load(sys.argv[1], weights_only=True)['global_step'])" "$1"; }
lm_state_step=$([ -f "$LM_STATE" ] && step_of "$LM_STATE" || echo -1)
tail -n +2 "$HISTORY" | while IFS=, read -r step _ _ _ _ _ commit; do
  snap="$LM/snapshots/step$step.pt"
  [ -f "$snap" ] && continue
  if [ -f "$LM/checkpoints/last.ckpt" ]; then
    last_step=$(step_of "$LM/checkpoints/last.ckpt")
    if [ "$last_step" -gt "$step" ]; then echo "$LM is past step $step; no snapshot there"; continue; fi
    if [ "$last_step" -eq "$step" ]; then cp "$LM/model.pt" "$snap"; continue; fi  # trained there, stopped before the copy
    from=(--resume)
  elif [ "$lm_state_step" -ge "$step" ]; then
    echo "step $step is not after $LM_STATE (step $lm_state_step): its figures are in $LM_HISTORY"; continue
  elif [ "$lm_state_step" -ge 0 ]; then
    from=(--resume-from "$LM_STATE")
  else
    from=(--kind lm --data "$DATA" --seed 0)
  fi
  read -r -a schedule < <(schedule_at "$commit")
  echo "LM to step $step with the VAE's schedule at $commit: ${schedule[*]}"
  # shellcheck disable=SC2086
  $MOLGEN train "${from[@]}" --out "$LM" --max-steps "$step" --threads "$THREADS" --no-progress \
    --set trainer.fcd_reference="$TEST" "${schedule[@]}" $EXTRA < /dev/null
  # an if, not `test && cp`: a false test on the last row would end the piped loop with 1 (set -e)
  if [ "$(step_of "$LM/checkpoints/last.ckpt")" -eq "$step" ]; then cp "$LM/model.pt" "$snap"; fi
done
for snap in "$LM"/snapshots/step*.pt; do
  [ -e "$snap" ] || continue  # no snapshot (every history step is before the LM state): the glob stays literal
  name=$(basename "$snap" .pt)
  [ -f "$OUT/score-$name.json" ] && continue
  $MOLGEN evaluate --model "$snap" --data "$TEST" --on-invalid skip --n 200 --k 1 --out "$OUT/eval-$name.json"
  $MOLGEN sample --model "$snap" -n "$N" --seed 0 --constraints relaxed --out "$OUT/samples-$name.csv" \
    | tee "$OUT/sample-$name.json"  # its summary: the raw relaxed validity
  $MOLGEN score "$OUT/samples-$name.csv" --out "$OUT/score-$name.json"
done
LM_METRICS=$LM/metrics.csv
if [ ! -f "$LM_METRICS" ]; then  # nothing trained this time: the committed LM state's curves
  LM_METRICS=$OUT/lm-state-metrics.csv
  "$PY" -c "import sys; from molgen.training_state import state_metrics; open(sys.argv[2], 'w', encoding='utf-8', newline='').write(state_metrics(sys.argv[1]))" "$LM_STATE" "$LM_METRICS"
fi
$PY scripts/plot_lm_vs_vae.py --lm-metrics "$LM_METRICS" --lm-figures "$OUT" --vae-history "$HISTORY" \
  --lm-history "$LM_HISTORY" --update-lm-history "${PLOT:-checkpoints/card/lm_vs_vae.png}"
