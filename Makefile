# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
OUT ?= out

.PHONY: run test install install-test data clean

$(VENV)/.installed: pyproject.toml setup.py molgen/metrics/_tanimoto.c molgen/nn/_gru_cell.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

N ?= 30000

# The main job on bundled defaults: sample a library from the shipped model and score it.
run: install
	mkdir -p $(OUT)
	$(VENV)/bin/molgen sample -n $(N) --seed 0 --threads 2 --out $(OUT)/samples.csv
	$(VENV)/bin/molgen score $(OUT)/samples.csv --n $(N) --out $(OUT)/score.json --plots $(OUT)/plots

test: install
	$(PY) -m pytest -q

# Re-extract the MOSES splits and filter SMARTS from the molsets==0.3.1 wheel.
data: install
	$(PY) scripts/extract_moses.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache molgen/metrics/_tanimoto*.so molgen/nn/_gru_cell*.so
