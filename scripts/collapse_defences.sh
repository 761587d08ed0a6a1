#!/usr/bin/env bash
# The posterior-collapse defences at equal compute (docs/DESIGN.md §11.2): every setting trains the
# default VAE from scratch on the same data with the same seed, batch and number of molecules, and
# only its defence differs; then each model (its weights as trained, prior not refitted) is measured
# the same way: `molgen evaluate` on the same 200 MOSES test molecules (−IWAE-K, KL, active units,
# I(x;z), N_eff), the run's last val/exact, and `molgen score` of N samples (seed 0, relaxed, invalid
# draws redrawn). The table (scripts/defences_table.py) marks the choice: the lowest −IWAE among
# the settings that keep KL >= 10 nats.
#   bash scripts/collapse_defences.sh [OUT]
# Settings (SETTINGS picks some, by name; all but kl_target switch the default KL target off):
#   plain         beta = 1 after the warm-up, nothing else       --set objective.kl_target=0
#   kl_target     the default: a floor of 12 nats on the batch KL (§4.5)
#   free_bits     0.2 nats per dimension (64 dims: 12.8 nats)    objective.free_bits=0.2
#   word_dropout  a quarter of the decoder's input tokens        model.word_dropout=0.25
#   bn_vae        posterior means batch-normalised, scale 0.5   model.mu_batchnorm=0.5
#   cyclical      4 cycles of MOLECULES/5, rising over half each objective.beta_cycle_molecules
#   ae_warm       beta = 0 for MOLECULES/10, then a fresh decoder objective.ae_warmup_molecules
# and, not a defence but the mixture-collapse ablation beside the default (not in the default list,
# never the choice; compare its N_eff, dead components and I(x;k) with kl_target's):
#   no_restart    the default without the dead-component restarts  --no-restart
# Resumable: a setting whose score file exists is skipped, a run folder with last.ckpt goes on (so
# one OUT holds one budget: use another OUT for another MOLECULES). On 2 CPU cores at ~1,200 mol/s a
# setting of 3 M molecules trains in ~42 min (AMD Zen 4: ~600 mol/s). Two runs side by side, one
# thread each (THREADS=1, SETTINGS split between them, the same OUT) train more molecules per
# CPU-second than one at 2 threads; on a GPU pass EXTRA="--accelerator gpu --precision
# bf16-mixed" (and BATCH: every setting gets the same one, the schedules count molecules).
# Environment: DATA, TEST, MOLECULES (3,000,000), BATCH (256), SEED (0), N (10,000 samples),
# N_EVAL (200), K_EVAL (1000), THREADS (2), EXTRA (more `molgen train` flags: tiny settings for a
# dry run, or "--accelerator gpu --precision bf16-mixed" on a GPU), PY, MOLGEN.
set -euo pipefail
OUT=${1:-out/collapse-defences}
DATA=${DATA:-data/moses/train.csv.gz}
TEST=${TEST:-data/moses/test.csv.gz}
MOLECULES=${MOLECULES:-3000000}
BATCH=${BATCH:-256}
SEED=${SEED:-0}
N=${N:-10000}
N_EVAL=${N_EVAL:-200}
K_EVAL=${K_EVAL:-1000}
THREADS=${THREADS:-2}
EXTRA=${EXTRA:-}
PY=${PY:-.venv/bin/python}
MOLGEN=${MOLGEN:-.venv/bin/molgen}
SETTINGS=${SETTINGS:-plain kl_target free_bits word_dropout bn_vae cyclical ae_warm}
STEPS=$(( MOLECULES / BATCH ))
[ "$STEPS" -ge 1 ] || { echo "MOLECULES ($MOLECULES) is less than one batch ($BATCH)" >&2; exit 2; }
flags_for() {
  case $1 in
    plain) echo "--set objective.kl_target=0" ;;
    kl_target) echo "" ;;
    free_bits) echo "--set objective.kl_target=0 --set objective.free_bits=0.2" ;;
    word_dropout) echo "--set objective.kl_target=0 --set model.word_dropout=0.25" ;;
    bn_vae) echo "--set objective.kl_target=0 --set model.mu_batchnorm=0.5" ;;
    cyclical) echo "--set objective.kl_target=0 --set objective.beta_cycle_molecules=$(( MOLECULES / 5 ))" ;;
    ae_warm) echo "--set objective.kl_target=0 --set objective.ae_warmup_molecules=$(( MOLECULES / 10 ))" ;;
    no_restart) echo "--no-restart" ;;
    *) echo "unknown setting $1 (known: plain kl_target free_bits word_dropout bn_vae cyclical ae_warm no_restart)" >&2; return 2 ;;
  esac
}
step_of() { "$PY" -c "import torch,sys; print(torch.load(sys.argv[1], weights_only=True)['global_step'])" "$1"; }
mkdir -p "$OUT"
for name in $SETTINGS; do
  flags=$(flags_for "$name")
  run=$OUT/$name
  [ -f "$run/score.json" ] && { echo "$name: measured already ($run/score.json)"; continue; }
  last=$run/checkpoints/last.ckpt
  if [ ! -f "$last" ]; then
    from=(--data "$DATA" --seed "$SEED")
  elif [ "$(step_of "$last")" -lt "$STEPS" ]; then
    from=(--resume)
  else
    from=()
  fi
  if [ ${#from[@]} -gt 0 ]; then
    echo "$name: $STEPS steps of $BATCH molecules $flags"
    # shellcheck disable=SC2086
    $MOLGEN train "${from[@]}" --out "$run" --max-steps "$STEPS" --batch-size "$BATCH" --threads "$THREADS" \
      --no-progress --set trainer.fcd_reference="$TEST" $flags $EXTRA < /dev/null
  fi
  OMP_NUM_THREADS=$THREADS $MOLGEN evaluate --model "$run/model.pt" --data "$TEST" --on-invalid skip --n "$N_EVAL" --k "$K_EVAL" \
    --out "$run/eval.json"
  $MOLGEN sample --model "$run/model.pt" -n "$N" --seed 0 --constraints relaxed --threads "$THREADS" --out "$run/samples.csv" \
    | tee "$run/sample.json"  # its summary: the raw relaxed validity
  OMP_NUM_THREADS=$THREADS $MOLGEN score "$run/samples.csv" --n "$N" --out "$run/score.json"
done
$PY scripts/defences_table.py "$OUT" --molecules "$MOLECULES" | tee "$OUT/table.md"
