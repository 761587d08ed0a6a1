#!/usr/bin/env bash
# Build the separate MOSES reference virtualenv used by benchmarks/moses_reference.py.
# MOSES (molsets 0.3.1) is never a molgen dependency: its pins (numpy<2, pandas<2, old scipy/rdkit)
# clash with molgen's, so it lives in its own venv. Usage: bash benchmarks/make_moses_venv.sh [DIR]
set -euo pipefail
VENV="${1:-/tmp/moses-venv}"
PY="${PYTHON:-python3.11}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet \
  "numpy<2" "pandas<2" "scipy==1.11.4" "rdkit==2023.9.6" "torch==2.13.0" \
  tqdm matplotlib seaborn
# --no-deps: molsets 0.3.1 pins versions that no longer install; fcd_torch would pull another torch.
"$VENV/bin/python" -m pip install --quiet --no-deps "molsets==0.3.1" fcd_torch
"$VENV/bin/python" -c "import moses, fcd_torch, rdkit, numpy, pandas, torch; print('moses venv ok:', 'rdkit', rdkit.__version__, 'numpy', numpy.__version__, 'pandas', pandas.__version__, 'torch', torch.__version__)"
