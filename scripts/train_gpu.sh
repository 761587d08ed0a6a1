#!/usr/bin/env bash
# Train the default VAE on a GPU machine for a fixed wall-clock budget and export the weights.
#
#     bash scripts/train_gpu.sh          # from the repo root, on the GPU machine
#
# For a machine with no package index (the device tool's GPU machines), fetch the two wheels first
# and carry .gpu (ignored by git):
#     .venv/bin/pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --platform manylinux_2_28_x86_64 -d .gpu/wheels rdkit==2026.9.1 selfies==2.2.0
# 2026-11-26, one H200, the defaults of then (batch 512, no KL target): 12,879 steps (6.6 M molecules, 4.2 epochs) in 371 s of training,
# 17,781 molecules/s; the latent collapsed (val KL 21.3 -> 1.2 nats, exact reconstruction 0) while
# the ELBO kept improving (-35.8 -> -20.9): long runs need free bits or a KL target (not shipped).
#
# Steps: (1) install carried rdkit/selfies wheels if missing (no index, no deps: the image's torch,
# Lightning, numpy etc. are used as they are); (2) `molgen data stats` fills the token cache and times
# the tokenization; (3) `molgen train`, continuing the committed run ($STATE, when it exists: same
# step, molecules seen, optimizer and schedule; its config with this script's batch size etc.) or
# starting one, bf16-mixed, for whatever is left of the budget; (4) export checkpoints/last.ckpt to a
# weights-only model.pt, pack the run's state into $DEST/molgen-moses.state.pt (commit it over
# $STATE so that the next stretch, on any machine, goes on from it) and copy metrics.csv,
# summary.json, config.yaml and hparams.yaml beside them.
# Back on the CPU machine, to ship what came back (DEST the folder it landed in):
#     bash scripts/model_card.sh DEST/molgen-moses.state.pt out/model-card    # writes checkpoints/molgen-moses.pt
#     python scripts/pack_state.py DEST/molgen-moses.state.pt checkpoints/molgen-moses.state.pt \
#         --weights-from checkpoints/molgen-moses.pt --no-moments
#
# Environment (all optional):
#   DATA        training SMILES file            (data/moses/train.csv.gz)
#   RUN         run folder: checkpoints, logs   (runs/vae-gpu; keep it out of $OUT: .ckpt files are ~25 MB)
#   DEST        where model.pt etc. are copied  ($OUT/vae-gpu where $OUT is set, else $RUN)
#   WHEELS      carried wheels                  (.gpu/wheels)
#   PY          Python interpreter              (python3)
#   ACCEL       --accelerator                   (gpu)
#   PRECISION   --precision                     (bf16-mixed; if training fails before its first
#                                                checkpoint, it is retried once with 32-true)
#   BATCH       --batch-size                    (4096; the schedules below count molecules, so they hold at any batch)
#   LR          --lr, the peak learning rate    (unset: the state's; a cooled state trains at its optim.lr_final,
#                                                and "--set optim.cooldown_from_molecules=null" re-warms it to LR)
#   WARMUP_MOLECULES   the lr ramps up over this stretch's first N molecules (500000): a larger batch
#                      than the state's meets Adam moments of the smaller one
#   THREADS     --threads                       (8)
#   VAL_EVERY_MOLECULES  validate + checkpoint every N molecules (2000000; --val-every N / BATCH steps)
#   RESTART_EVERY_MOLECULES  dead-component check every N molecules (409600: 100 steps of 4096; each
#                            check reads the usage back from the device)
#   DIAG_EVERY  collapse diagnostics and val/fcd at every N-th validation (2; the first and last always)
#   FCD_REFERENCE  what val/fcd is against (data/moses/test.csv.gz; a state names the path of the
#                  machine that packed it)
#   MAX_STEPS   --max-steps                     (-1: wall-clock limit only)
#   MAX_TIME    --max-time DD:HH:MM:SS          (default: computed, DEADLINE_S - seconds spent so far - RESERVE_S)
#   DEADLINE_S  seconds after this script starts by which everything should be done (540)
#   RESERVE_S   seconds kept for training start-up, final validation and export (45)
#   HARD_S      seconds after start at which training is sent SIGINT (it then validates, writes
#               last.ckpt and stops) so the export still runs (565)
#   STATE       training state to continue  (checkpoints/molgen-moses.state.pt; a missing file starts a new run,
#               e.g. STATE=none EXTRA_ARGS="--set model.dec_layers=3" for the MOSES-size decoder)
#   MOMENTS     1: the packed state keeps AdamW's moments (8-bit); 0 (default): it leaves them out, and
#               the next stretch rebuilds them under an lr warm-up. Files come back from the device
#               only up to 16 MiB: float16 weights with 8-bit moments are 4 bytes a parameter, so a
#               model over ~4 M parameters (3 decoder layers: ~5.2 M) comes back only without them;
#               model.pt is exported as float16 (2 bytes a parameter)
#   EXTRA_ARGS  more `molgen train` arguments, e.g. "--set data.val_size=200" for a tiny smoke test
#               (the state's learning-rate schedule goes on; after its cool-down it trains at optim.lr_final,
#               and "--set optim.cooldown_from_molecules=null" re-warms it to optim.lr)
# The settings this script passes (batch, warm-up, restart and diagnostics intervals) go into the
# state it packs; a later stretch elsewhere overrides what it needs (a CPU stretch: --batch-size 256
# --set objective.restart_every_steps=50 --set optim.warmup_molecules=0).
set -uo pipefail

T0=$(date +%s)
DATA=${DATA:-data/moses/train.csv.gz}
RUN=${RUN:-runs/vae-gpu}
if [ -n "${OUT:-}" ]; then DEST=${DEST:-$OUT/vae-gpu}; else DEST=${DEST:-$RUN}; fi
WHEELS=${WHEELS:-.gpu/wheels}
PY=${PY:-python3}
ACCEL=${ACCEL:-gpu}
PRECISION=${PRECISION:-bf16-mixed}
BATCH=${BATCH:-4096}
LR=${LR:-}
WARMUP_MOLECULES=${WARMUP_MOLECULES:-500000}
THREADS=${THREADS:-8}
VAL_EVERY_MOLECULES=${VAL_EVERY_MOLECULES:-2000000}
RESTART_EVERY_MOLECULES=${RESTART_EVERY_MOLECULES:-409600}
DIAG_EVERY=${DIAG_EVERY:-2}
FCD_REFERENCE=${FCD_REFERENCE:-data/moses/test.csv.gz}
steps_for() { local s=$(( $1 / BATCH )); [ "$s" -lt 1 ] && s=1; echo "$s"; }  # molecules -> steps, at least 1
VAL_EVERY=$(steps_for "$VAL_EVERY_MOLECULES")
RESTART_EVERY=$(steps_for "$RESTART_EVERY_MOLECULES")
MAX_STEPS=${MAX_STEPS:--1}
DEADLINE_S=${DEADLINE_S:-540}
RESERVE_S=${RESERVE_S:-45}
HARD_S=${HARD_S:-565}
EXTRA_ARGS=${EXTRA_ARGS:-}
STATE=${STATE:-checkpoints/molgen-moses.state.pt}
MOMENTS=${MOMENTS:-0}

export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
mkdir -p "$DEST"
LOG=$DEST/train.log
exec > >(tee -a "$LOG") 2>&1

stage() { echo "=== $(date -u +%H:%M:%S) +$(( $(date +%s) - T0 ))s: $*"; }
elapsed() { echo $(( $(date +%s) - T0 )); }
dhms() {  # seconds -> DD:HH:MM:SS
    local s=$1
    printf '%02d:%02d:%02d:%02d' $((s / 86400)) $((s % 86400 / 3600)) $((s % 3600 / 60)) $((s % 60))
}

stage "start (data $DATA, run $RUN, dest $DEST, accelerator $ACCEL, precision $PRECISION)"
if [ "$ACCEL" = gpu ] && command -v nvidia-smi >/dev/null; then nvidia-smi; fi
echo "cores: $(nproc)"

# (1) rdkit and selfies from carried wheels, if missing
if ! "$PY" -c 'import rdkit, selfies' 2>/dev/null; then
    stage "installing wheels from $WHEELS"
    "$PY" -m pip install -q --no-deps --no-index --no-compile "$WHEELS"/*.whl || { echo "wheel install failed"; exit 3; }
fi
"$PY" -c 'import torch, pytorch_lightning as pl, rdkit, selfies, numpy
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("lightning", pl.__version__, "rdkit", rdkit.__version__, "selfies", selfies.__version__, "numpy", numpy.__version__)' || exit 3

# (2) tokenize once (fills the token cache that `molgen train` then reads)
stage "molgen data stats $DATA"
"$PY" -m molgen data stats "$DATA" || { echo "data stats failed"; exit 4; }

# (3) train
train() {  # $1 precision, $2 run folder
    local spent max_time hard
    spent=$(elapsed)
    if [ -n "${MAX_TIME:-}" ]; then
        max_time=$MAX_TIME
    else
        local left=$((DEADLINE_S - spent - RESERVE_S))
        [ "$left" -lt 30 ] && { echo "only ${left}s left for training; not starting"; return 5; }
        max_time=$(dhms "$left")
    fi
    hard=$((HARD_S - spent)); [ "$hard" -lt 30 ] && hard=30
    local from=() lr=()
    [ -f "$STATE" ] && from=(--resume-from "$STATE")
    [ -n "$LR" ] && lr=(--lr "$LR")
    stage "molgen train ${from[*]} --precision $1 --max-time $max_time (SIGINT after ${hard}s) --out $2"
    # shellcheck disable=SC2086
    timeout -s INT -k 60 "$hard" "$PY" -m molgen train "${from[@]}" --data "$DATA" --out "$2" \
        --accelerator "$ACCEL" --precision "$1" --max-time "$max_time" --max-steps "$MAX_STEPS" \
        --val-every "$VAL_EVERY" --batch-size "$BATCH" "${lr[@]}" --seed 0 --threads "$THREADS" --no-progress \
        --set optim.warmup_molecules="$WARMUP_MOLECULES" --set objective.restart_every_steps="$RESTART_EVERY" \
        --set trainer.diag_every="$DIAG_EVERY" --set trainer.fcd_reference="$FCD_REFERENCE" $EXTRA_ARGS
}
train "$PRECISION" "$RUN"; rc=$?
stage "training exited with $rc"
if [ ! -f "$RUN/checkpoints/last.ckpt" ] && [ "$PRECISION" != 32-true ] && [ "$rc" -ne 5 ]; then
    RUN=$RUN-fp32
    train 32-true "$RUN"; rc=$?
    stage "training (32-true) exited with $rc"
fi

# (4) export the last checkpoint (float16) and copy the run's records
if [ -f "$RUN/checkpoints/last.ckpt" ]; then
    stage "export $RUN/checkpoints/last.ckpt -> $DEST/model.pt"
    "$PY" scripts/export_checkpoint.py "$RUN/checkpoints/last.ckpt" "$DEST/model.pt" --half || echo "export failed"
    moments=(); [ "$MOMENTS" = 1 ] || moments=(--no-moments)
    "$PY" scripts/pack_state.py "$RUN" "$DEST/molgen-moses.state.pt" --half-weights "${moments[@]}" || echo "packing the state failed"
else
    echo "no checkpoint in $RUN/checkpoints; nothing to export"
fi
for f in metrics.csv summary.json config.yaml hparams.yaml; do
    if [ -f "$RUN/$f" ] && [ "$(cd "$RUN" && pwd)/$f" != "$(cd "$DEST" && pwd)/$f" ]; then cp "$RUN/$f" "$DEST/"; fi
done
ls -la "$RUN" "$RUN/checkpoints" "$DEST" 2>/dev/null
[ -f "$DEST/summary.json" ] && "$PY" -c "import json,sys; s=json.load(open(sys.argv[1])); print({k: s[k] for k in ('global_step','epoch','molecules_this_run','seconds_this_run','molecules_per_second')})" "$DEST/summary.json"
stage "done (training rc $rc)"
exit "$rc"
