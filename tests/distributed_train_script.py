"""Trains a tiny doctor for a few steps and prints its log history as JSON (run by test_distributed.py,
once plainly and once under `accelerate launch --num_processes 2 --cpu`)."""

import json
import sys

from tfpo_fixtures import scored_dataset

from tfpo_hf import DoctorModel, TFPOConfig, TFPOTrainer
from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer


output_dir = sys.argv[1]
args = TFPOConfig(
    output_dir,
    max_steps=4,
    per_device_train_batch_size=2,
    logging_steps=2,
    report_to="none",
    use_cpu=True,
    save_strategy="no",
    learning_rate=1e-3,
    disable_tqdm=True,
)
trainer = TFPOTrainer(
    DoctorModel(tiny_causal_lm(seed=2)), args=args, train_dataset=scored_dataset(16), processing_class=tiny_tokenizer()
)
trainer.train()
if trainer.is_world_process_zero():
    print("LOG_HISTORY=" + json.dumps({"world_size": trainer.args.world_size, "history": trainer.state.log_history}))
