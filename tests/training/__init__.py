"""Stage 2, `tfpo_hf.training`: `TFPOConfig`, `TFPOTrainer`, its losses, collator, flow reference and checkpoints."""
