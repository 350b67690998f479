# bertforge: `make repro` runs the pipeline, `make test` runs the test suite.
# Both create .venv on first use and re-install only when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# then the headline: each model's test average and task scores (bertforge results)
repro: setup
	dvc repro
	@bertforge results

# two workers (pytest-xdist), each test file on one of them so that its module fixtures are built
# once: on 2 cores about two thirds of a one-process run (README, "Development");
# `make test TEST_WORKERS=0` runs the suite in one process
TEST_WORKERS ?= 2

test: setup
	python -m pytest -n $(TEST_WORKERS) --dist loadfile

lint: setup
	ruff check src stages tests benchmarks scripts
	ruff format --check src stages tests benchmarks scripts

bench: setup
	python -m pip install --quiet -e ".[dev,bench]"
	python benchmarks/bench_ingest.py
	python benchmarks/bench_sentence_splitters.py
	python benchmarks/bench_examples.py
	python benchmarks/bench_model.py
	python benchmarks/bench_repro.py vocab
	python benchmarks/bench_repro.py

clean:
	rm -rf $(VENV)
