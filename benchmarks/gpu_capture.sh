#!/usr/bin/env bash
# Captured guided decoding on one lease of the GPU machine (issue "Guidance at the GPU's speed"): random weights of
# the Qwen2.5 0.5B / 1.5B / 7B shapes (nothing to carry but the source), bf16, prompt 128, 64 new tokens.
# The machine has torch, transformers and peft; tfpo_hf runs from src. Figures: $OUT/capture.json and stdout.
#   run from the repository root: bash benchmarks/gpu_capture.sh
set -u
export PYTHONPATH=$PWD/src:$PWD
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
echo "== the fixed-shape path against eager on this machine's transformers (tiny models, CPU)"
timeout 120 python3 -m pytest tests/guidance/test_static_decoding.py -q -x -p no:cacheprovider -m "not slow" 2>&1 | tail -2
echo "== 1.5B and 7B patients, 0.5B doctor, batches 1 and 8 (the targets), then 32"
timeout 420 python3 benchmarks/bench_capture.py --device cuda --bf16 --patients 7B 1.5B --batch-sizes 1 8 32 \
  --repeats 2 --output "${OUT:-/tmp}/capture.json" 2>&1 | grep -v Warning
