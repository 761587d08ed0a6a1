#!/usr/bin/env bash
# Every figure of issue 8 in one sitting, molgen and the MOSES peer side by side in each script;
# each script appends its table to benchmarks/RESULTS.md. Run on an otherwise idle machine:
#   bash benchmarks/make_moses_venv.sh      # once: the MOSES reference implementation in /tmp/moses-venv
#   bash benchmarks/run_all.sh 2>&1 | tee benchmarks.log
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH=.
echo "== scoring: molgen score vs moses.get_all_metrics (30,000 test and 30,000 train molecules)"
$PY benchmarks/moses_reference.py --n 30000
echo "== sampling 30,000 molecules to CSV: molgen vs MOSES VAE"
$PY benchmarks/sample_vs_moses.py --n 30000
echo "== training throughput: molgen (default, MOSES-sized; fp32, bf16) vs MOSES VAE"
$PY benchmarks/train_vs_moses.py --steps 6 --warmup 2
echo "== tokenization of the MOSES train split: first run and cached reload"
$PY benchmarks/tokenize_moses.py
echo "== where molgen score spends its time (stages)"
$PY benchmarks/score_profile.py
