# Run `make` or `make help` for the list of targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?=
ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help setup demo extract train test test-fast lint notebooks docs bench bench-demo bench-extract bench-train bench-emotion bench-atei bench-compound bench-sweep bench-report bench-emotic bench-gpu bench-commands sweep compare report clean

help: ## Show this help
	@echo "Usage: make <target> [CONFIG=path/to/config.yaml] [ARGS='--set key=value ...']"
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv and install the project with its test extras

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP) ## Synthetic DAIC-WOZ-layout corpus → eGeMAPS features → baseline → MLflow
	$(BIN)/fusion demo $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

extract: $(STAMP) ## Extract features (CONFIG=configs/extract/<corpus>.yaml)
	$(BIN)/fusion extract $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

train: $(STAMP) ## Train and evaluate a model (CONFIG=configs/train/<experiment>.yaml)
	$(BIN)/fusion train $(if $(CONFIG),--config $(CONFIG)) $(ARGS)

sweep: $(STAMP) ## Optuna sweep of a train config (CONFIG=configs/sweep/<name>.yaml), then one nested evaluation
	$(BIN)/fusion sweep --config $(or $(CONFIG),configs/sweep/demo_baseline.yaml) $(ARGS)

report: $(STAMP) ## Participant / cohort reports, HTML + PDF (ARGS='--run RUN_DIR --participant ID --cohort')
	$(BIN)/fusion report $(ARGS)

compare: $(STAMP) ## Tracked runs side by side (ARGS='--experiment NAME [--metric uar] …')
	$(BIN)/fusion compare $(ARGS)

test: $(STAMP) ## Run the whole test suite (slow end-to-end tests included)
	$(BIN)/python -m pytest $(ARGS)

test-fast: $(STAMP) ## Run the tests without the slow end-to-end ones
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

notebooks: $(STAMP) ## Run notebooks/*.ipynb top to bottom; executed copies with outputs in notebooks/work/
	$(BIN)/python notebooks/execute.py

docs: $(STAMP) ## The documentation site (MkDocs, strict) into site/
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP) ## ruff
	$(BIN)/ruff check .

# Real public data for tests and benchmarks, beside the project when present.
AFFECT_SHARED_DATA ?= $(abspath $(wildcard ../shared/data))
export AFFECT_SHARED_DATA

bench: bench-demo bench-extract bench-train bench-emotion bench-atei bench-compound bench-report bench-emotic ## Run every CPU benchmark (results go in BENCHMARKS.md by hand)

bench-commands: $(STAMP) ## Wall time of every documented demo command, cold (ARGS='--full' adds the full evaluations)
	$(BIN)/python benchmarks/bench_commands.py $(ARGS)

bench-demo: $(STAMP) ## Wall time and peak memory of `fusion demo`, cold and warm
	$(BIN)/python benchmarks/bench_demo.py $(ARGS)

bench-extract: $(STAMP) ## eGeMAPS on RAVDESS and MiniLM on MELD: ours vs bare loops (needs AFFECT_SHARED_DATA)
	$(BIN)/python benchmarks/bench_extract.py $(ARGS)

bench-train: $(STAMP) ## Severity late fusion on 275 / 1,000 synthetic sessions: time, gains, ECE, paper protocol, neural models
	$(BIN)/python benchmarks/bench_train.py $(ARGS)

bench-emotion: $(STAMP) ## RAVDESS / MELD emotion recognition and the recognisers over the demo turns (needs AFFECT_SHARED_DATA)
	$(BIN)/python benchmarks/bench_emotion.py $(ARGS)

bench-atei: $(STAMP) ## ATEI: Lightning vs a bare loop (throughput, memory); with ARGS='--demo' its ablations on 275 demo sessions
	$(BIN)/python benchmarks/bench_atei.py $(ARGS)

bench-compound: $(STAMP) ## Window fusion on a synthetic C-EXPR-DB corpus: training and inference windows per second
	$(BIN)/python benchmarks/bench_compound.py $(ARGS)

bench-sweep: $(STAMP) ## Sweeps of the MLP learner with and without pruning (after bench-train)
	$(BIN)/python benchmarks/bench_sweep.py $(ARGS)

bench-report: $(STAMP) ## Participant and 275-session cohort report times, HTML and PDF (needs Chromium)
	$(BIN)/python benchmarks/bench_report.py $(ARGS)

bench-emotic: $(STAMP) ## EMOTIC: image-embedding extraction and context-head training against bare loops
	$(BIN)/python benchmarks/bench_emotic.py $(ARGS)

bench-gpu: $(STAMP) ## Every neural GPU path (bf16) on RAVDESS features: ARGS='--root … --store …'
	$(BIN)/python benchmarks/bench_gpu.py $(ARGS)

clean: ## Remove demo outputs (data/demo, features_store, mlruns, outputs, models)
	rm -rf data/demo features_store mlruns outputs models
