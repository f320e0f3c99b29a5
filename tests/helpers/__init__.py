"""Shared test helpers, imported relatively (`from ..helpers.generation import encode`):

- `reference_guidance`, `reference_losses`: plain, obviously correct references of guidance and of the losses (also
  used by benchmarks/);
- `tiny_data`: tiny preference and scored datasets, chat messages;
- `training`: the one `TFPOConfig` factory (`make_args`) and a tiny `TFPOTrainer`;
- `generation`: prompts, greedy generation and the comparison of guided generations;
- `disk`: models saved and reloaded, files damaged on purpose, pickled checkpoints and a spy on `torch.load`;
- `hub`: a guard against Hub lookups, and a fake Hub repo;
- `config_cases`: bad values of the fields both configs share;
- `subprocesses`: running scripts offline in a fresh interpreter.
"""

from pathlib import Path


REPO_ROOT = Path(__file__).resolve().parents[2]
