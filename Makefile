# One Makefile: setup, demo, test, bench. Every target is idempotent.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-fast bench clean

setup: $(STAMP)

# torch==2.14.1 / torchvision==0.29.1 are pinned in pyproject.toml; pip takes them from the local wheel cache.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $@

demo: setup
	$(VENV)/bin/dvc repro
	@echo
	cat reports/compare/compare.md
	@echo
	@echo "Tuning (reports/tune/best_params.yaml; trials.csv and plots/ beside it):"
	@cat reports/tune/best_params.yaml
	@echo
	@echo "Registry (reports/registry/decision.json has the gate's numbers):"
	$(VENV)/bin/compclip models
	@echo
	@echo "MLflow UI:  $(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow/mlflow.db  (then http://127.0.0.1:5000)"
	@echo "Reports:    reports/compare/{compare.md,compare.png}   reports/evaluate/<method>/metrics.json   data/ingest/summary.json   dvc metrics show"
	@echo "Record:     .venv/bin/python bench/sweep.py --no-run --out bench/results/demo_cpu.json  (the table above, with its provenance)"

test: setup
	$(VENV)/bin/pytest -q

test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow"

# Each writes its results with their provenance (commit, versions, device, params) to bench/results/.
bench: setup
	$(PY) bench/train_throughput.py --model compclip-tiny-rn --out bench/results/train_throughput_cpu.json
	$(PY) bench/negatives_throughput.py --out bench/results/negatives_throughput_cpu.json
	$(PY) bench/negatives_dask.py --out bench/results/negatives_dask_cpu.json
	$(PY) bench/method_step_time.py --out bench/results/method_step_time_cpu.json
	$(PY) bench/eval_scoring.py --out bench/results/eval_scoring_cpu.json
	$(PY) bench/step_speedups.py --rounds 15 --out bench/results/step_speedups_cpu.json

clean:
	rm -rf data models reports mlflow/mlflow.db mlflow/artifacts
