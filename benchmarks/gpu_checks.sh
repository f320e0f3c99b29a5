#!/usr/bin/env bash
# CUDA checks for one short lease of the device machine (see docs/results.md for the figures it printed).
# The SmolLM2 weights cannot travel (98 MB GGUF), so the CUDA timings use random weights of SmolLM2's exact
# architecture (gpu_assets/smollm2: its config and tokenizer): same shapes, same cost.
#   carry: .whl (trl, datasets, dill, multiprocess wheels for Python 3.12) and gpu_assets
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD/src || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers, trl, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__)"
echo "== CPU unit tests on this machine's transformers (trainer, losses)"
timeout 150 python3 -m pytest tests/training/test_trainer.py tests/training/test_losses.py -q -x -p no:cacheprovider 2>&1 | tail -3
for precision in "" "--bf16"; do
  echo "== guided generation on CUDA ${precision:-fp32}"
  timeout 120 python3 benchmarks/bench_generate.py --patient gpu_assets/smollm2 --random-weights --device cuda \
    --batch-size 8 --max-new-tokens 64 --reference-tokens 16 --repeats 3 $precision 2>&1 | grep -v Warning
done
echo "== training throughput on CUDA, bf16, full-depth SmolLM2-shaped doctor: TFPO vs DPO"
timeout 150 python3 benchmarks/bench_train.py --patient gpu_assets/smollm2 --random-weights --device cuda --bf16 \
  --layers 30 --pairs 64 --batch-size 8 --repeats 2 2>&1 | grep -E "model:|tokens/s|ratio"
