"""`TokenRewardConfig` (stage 1): bad values rejected naming the field, help text, defaults, and a config module that
does not import transformers. The fields it shares with `TFPOConfig` are tested with both configs in
tests/training/test_config.py."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import pytest
from transformers import HfArgumentParser

from tfpo_hf.rewards.config import (
    DEFAULT_FACE_TEMPLATE,
    DEFAULT_NEGATIVE_SYSTEM_PROMPT,
    DEFAULT_POSITIVE_SYSTEM_PROMPT,
    TRUNCATION_MODES,
    TokenRewardConfig,
)

from ..helpers.config_cases import SHARED_BAD_VALUES


TOKEN_REWARD_BAD_VALUES = SHARED_BAD_VALUES + [
    ("eps", 0.0),
    ("eps", -1e-6),
    ("eps", math.nan),
    ("batch_size", 0),
    ("batch_size", -2),
    ("face_template", "{prompt}"),
    ("face_template", "{system_prompt}"),
]


@pytest.mark.parametrize(
    ("name", "value"), TOKEN_REWARD_BAD_VALUES, ids=[f"{n}={v!r}" for n, v in TOKEN_REWARD_BAD_VALUES]
)
def test_token_reward_config_rejects_bad_value_naming_the_field(name, value):
    with pytest.raises(ValueError, match=f"`{name}`"):
        TokenRewardConfig(**{name: value})


def test_every_token_reward_field_has_help():
    missing = [f.name for f in dataclasses.fields(TokenRewardConfig) if not f.metadata.get("help", "").strip()]
    assert missing == []
    text = HfArgumentParser((TokenRewardConfig,)).format_help()
    for f in dataclasses.fields(TokenRewardConfig):
        assert f"--{f.name}" in text


def test_token_reward_defaults_unchanged():
    expected = {
        "positive_system_prompt": DEFAULT_POSITIVE_SYSTEM_PROMPT,
        "negative_system_prompt": DEFAULT_NEGATIVE_SYSTEM_PROMPT,
        "theta": 0.5,
        "tau": 1.0,
        "eps": 1e-6,
        "batch_size": 8,
        "max_length": 1024,
        "max_prompt_length": None,
        "truncation_mode": "keep_start",
        "face_template": DEFAULT_FACE_TEMPLATE,
    }
    assert dataclasses.asdict(TokenRewardConfig()) == expected
    assert TRUNCATION_MODES == ("keep_start", "keep_end")


def test_token_reward_config_module_does_not_import_transformers():
    # A fresh interpreter: this one has long imported transformers. Stage 1's config must not pay for it.
    code = (
        "import sys, tfpo_hf.rewards.config as m; m.TokenRewardConfig(theta=0.3); "
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'transformers', 'torch', 'trl', 'datasets'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
