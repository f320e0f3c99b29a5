"""Trains a tiny doctor for a few steps and prints its log history as JSON (run by tests/training/test_distributed.py,
once plainly and once under `accelerate launch --num_processes 2 --cpu`).

    PYTHONPATH=REPO_ROOT python -m tests.scripts.distributed_train_script OUTPUT_DIR
"""

import json
import sys

from tfpo_hf import DoctorModel
from tfpo_hf.testing import tiny_causal_lm

from ..helpers.tiny_data import scored_dataset
from ..helpers.training import make_args, tiny_trainer


def main(output_dir: str) -> None:
    args = make_args(output_dir, max_steps=4, per_device_train_batch_size=2, logging_steps=2, learning_rate=1e-3)
    trainer = tiny_trainer(args, scored_dataset(16), DoctorModel(tiny_causal_lm(seed=2)))
    trainer.train()
    if trainer.is_world_process_zero():
        history = {"world_size": trainer.args.world_size, "history": trainer.state.log_history}
        print("LOG_HISTORY=" + json.dumps(history))


if __name__ == "__main__":
    main(sys.argv[1])
