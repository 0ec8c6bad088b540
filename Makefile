# Two commands set everything up: `make demo` (the main job on the embedded default) and
# `make test` (the test suite). Each creates .venv and installs the project when missing.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PARAMS ?= params/default.yaml
CORES ?= 2
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_DISABLE_TELEMETRY := 1
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test test-fast lint bench dvc-yaml schema clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24" 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install --quiet -e '.[test]' 2>&1 | grep -v "is ignored" || true
	$(PY) -c "import pipeline, torch, snakemake, dvc, mlflow"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --printshellcmds --config params=$(PARAMS)
	@echo "Done: the tables and figures of $(PARAMS) (results/ for the default; see README)"

test: $(STAMP)
	$(PY) -m pytest tests

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/snakemake --lint --config params=$(PARAMS)

bench: $(STAMP)
	$(PY) bench/bench_eval.py
	$(PY) bench/bench_diffuseq.py --quick
	$(PY) bench/bench_samplers.py

dvc-yaml: $(STAMP)
	$(PY) -m pipeline dvc-yaml --params params/default.yaml
	$(PY) -m pipeline dvc-yaml --params params/paper.yaml

schema: $(STAMP)
	$(PY) -m pipeline schema

clean-results:
	rm -rf results logs .snakemake/incomplete
