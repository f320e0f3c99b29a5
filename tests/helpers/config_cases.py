"""Bad values of the fields `TokenRewardConfig` and `TFPOConfig` share (declared once, in `tfpo_hf.rewards.config`):
each must raise a ValueError that names the field, in either config."""

import math


SHARED_BAD_VALUES = [
    ("theta", -0.1),
    ("theta", 1.0),
    ("theta", 1.5),
    ("theta", math.nan),
    ("theta", None),
    ("tau", 0.0),
    ("tau", -1.0),
    ("tau", math.inf),
    ("tau", math.nan),
    ("max_length", 1),
    ("max_length", 0),
    ("max_length", -5),
    ("max_length", 64.0),
    ("max_prompt_length", 0),
    ("max_prompt_length", -1),
    ("truncation_mode", "keep_middle"),
    ("truncation_mode", "KEEP_START"),
]
