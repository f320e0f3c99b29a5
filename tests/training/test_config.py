"""`TFPOConfig` (stage 2): validation, CLI parsing, help text, the fields it shares with `TokenRewardConfig` (checked
in both configs), the stage-1 hand-over and the re-exports from `tfpo_hf.training.config`. What only
`TokenRewardConfig` has is tested in tests/rewards/test_config.py."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from transformers import HfArgumentParser, TrainingArguments

from tfpo_hf.doctor.config import UNRECORDED_BETA
from tfpo_hf.rewards.config import (
    DEFAULT_FACE_TEMPLATE,
    DEFAULT_NEGATIVE_SYSTEM_PROMPT,
    DEFAULT_POSITIVE_SYSTEM_PROMPT,
    TokenRewardConfig,
)
from tfpo_hf.training.config import DEFAULT_GUIDANCE_BETA, FLOW_REFERENCES, TFPOConfig

from ..helpers.config_cases import SHARED_BAD_VALUES
from ..helpers.training import make_args


SHARED_FIELDS = {
    "positive_system_prompt",
    "negative_system_prompt",
    "theta",
    "tau",
    "max_length",
    "max_prompt_length",
    "truncation_mode",
}


TFPO_BAD_VALUES = SHARED_BAD_VALUES + [
    ("guidance_beta", math.inf),
    ("guidance_beta", math.nan),
    ("guidance_beta", -math.inf),
    ("guidance_alpha", math.nan),
    ("guidance_alpha", math.inf),
    ("lambda_value", -0.1),
    ("lambda_value", math.nan),
    ("lambda_value", math.inf),
    ("gamma", math.nan),
    ("gamma", math.inf),
    ("subtb_max_span", 0),
    ("subtb_max_span", -3),
    ("reward_batch_size", 0),
    ("reward_batch_size", -1),
    ("flow_reference", "final"),
    ("flow_reference", None),
    ("model_init_kwargs", 3),
    ("model_init_kwargs", ["dtype"]),
]


@pytest.mark.parametrize(("name", "value"), TFPO_BAD_VALUES, ids=[f"{n}={v!r}" for n, v in TFPO_BAD_VALUES])
def test_tfpo_config_rejects_bad_value_naming_the_field(tmp_path, name, value):
    with pytest.raises(ValueError, match=f"`{name}`"):
        make_args(tmp_path, **{name: value})


GOOD_BOUNDARY_VALUES = [
    ("theta", 0.0),
    ("theta", 0.999),
    ("tau", 1e-9),
    ("max_length", 2),
    ("max_length", None),
    ("max_prompt_length", 1),
    ("max_prompt_length", None),
    ("truncation_mode", "keep_end"),
]


@pytest.mark.parametrize(("name", "value"), GOOD_BOUNDARY_VALUES)
def test_boundary_values_are_accepted_by_both_configs(tmp_path, name, value):
    assert getattr(TokenRewardConfig(**{name: value}), name) == value
    assert getattr(make_args(tmp_path, **{name: value}), name) == value


def test_tfpo_boundary_values_are_accepted(tmp_path):
    args = make_args(
        tmp_path,
        lambda_value=0.0,
        gamma=-1.0,
        guidance_beta=0.0,
        guidance_alpha=0.0,
        subtb_max_span=1,
        reward_batch_size=1,
        flow_reference="none",
    )
    assert (args.lambda_value, args.gamma, args.subtb_max_span, args.reward_batch_size) == (0.0, -1.0, 1, 1)


def test_error_message_says_how_to_fix(tmp_path):
    with pytest.raises(ValueError) as error:
        make_args(tmp_path, max_length=1)
    assert "None for no limit" in str(error.value) and "got 1" in str(error.value)
    with pytest.raises(ValueError) as error:
        TokenRewardConfig(truncation_mode="left")
    assert "'keep_start', 'keep_end'" in str(error.value)


def test_model_init_kwargs_json_string_is_parsed(tmp_path):
    args = make_args(tmp_path, model_init_kwargs='{"dtype": "float32", "revision": "main"}')
    assert args.model_init_kwargs == {"dtype": "float32", "revision": "main"}
    assert make_args(tmp_path, model_init_kwargs={"dtype": "bfloat16"}).model_init_kwargs == {"dtype": "bfloat16"}
    assert make_args(tmp_path).model_init_kwargs is None


@pytest.mark.parametrize("text", ['{"dtype": float32}', "{dtype: 1}", "dtype=float32", "", "[1, 2]", '"x"', "null"])
def test_model_init_kwargs_bad_json_or_non_object_raises(tmp_path, text):
    with pytest.raises(ValueError, match="`model_init_kwargs`"):
        make_args(tmp_path, model_init_kwargs=text)


def test_hf_argument_parser_parses_tfpo_fields(tmp_path):
    parser = HfArgumentParser((TFPOConfig,))
    (args,) = parser.parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--report_to",
            "none",
            "--theta",
            "0.3",
            "--flow_reference",
            "none",
            "--model_init_kwargs",
            json.dumps({"dtype": "float32"}),
            "--max_length",
            "64",
            "--reward_batch_size",
            "3",
            "--truncation_mode",
            "keep_end",
            "--subtb_max_span",
            "5",
            "--guidance_beta",
            "1.5",
        ]
    )
    assert args.theta == 0.3
    assert args.flow_reference == "none"
    assert args.model_init_kwargs == {"dtype": "float32"}
    assert (args.max_length, args.reward_batch_size, args.truncation_mode) == (64, 3, "keep_end")
    assert (args.subtb_max_span, args.guidance_beta) == (5, 1.5)


def test_hf_argument_parser_rejects_choice_and_bad_value(tmp_path):
    parser = HfArgumentParser((TFPOConfig,))
    with pytest.raises(SystemExit):  # argparse `choices`
        parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--flow_reference", "final"])
    with pytest.raises(ValueError, match="`theta`"):
        parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--report_to", "none", "--theta", "2"])


def test_trl_parser_parses_both_configs(tmp_path):
    trl = pytest.importorskip("trl")
    (args,) = trl.TrlParser((TFPOConfig,)).parse_args_and_config(
        [
            "--output_dir",
            str(tmp_path),
            "--report_to",
            "none",
            "--tau",
            "0.5",
            "--model_init_kwargs",
            '{"dtype": "float32"}',
        ]
    )
    assert (args.tau, args.model_init_kwargs) == (0.5, {"dtype": "float32"})
    (rewards,) = trl.TrlParser((TokenRewardConfig,)).parse_args_and_config(["--batch_size", "4", "--eps", "1e-5"])
    assert (rewards.batch_size, rewards.eps) == (4, 1e-5)


def test_help_renders_for_both_configs():
    # argparse %-formats help strings: a stray "%" would only fail here, at `--help`.
    for config in (TFPOConfig, TokenRewardConfig):
        text = HfArgumentParser((config,)).format_help()
        assert "--theta" in text and "--max_length" in text


def test_every_tfpo_specific_field_has_help_and_docstring_entry():
    own = {f.name for f in dataclasses.fields(TFPOConfig)} - {f.name for f in dataclasses.fields(TrainingArguments)}
    assert SHARED_FIELDS <= own
    for f in dataclasses.fields(TFPOConfig):
        if f.name in own:
            assert f.metadata.get("help", "").strip(), f.name
            assert f"\n        {f.name} (`" in TFPOConfig.__doc__, f"{f.name} is not in the TFPOConfig docstring"
    for f in dataclasses.fields(TokenRewardConfig):
        assert f"\n        {f.name} (`" in TokenRewardConfig.__doc__, f"{f.name} is not in the docstring"


def test_shared_fields_are_declared_once():
    tfpo_fields = {f.name: f for f in dataclasses.fields(TFPOConfig)}
    reward_fields = {f.name: f for f in dataclasses.fields(TokenRewardConfig)}
    for name in SHARED_FIELDS:
        assert tfpo_fields[name] is reward_fields[name], name  # the same Field object: one declaration
    assert "eps" not in tfpo_fields and "face_template" not in tfpo_fields
    assert "batch_size" not in tfpo_fields and "reward_batch_size" in tfpo_fields


def test_tfpo_defaults_unchanged(tmp_path):
    args = TFPOConfig(str(tmp_path))  # output_dir is still the first positional field
    assert args.output_dir == str(tmp_path)
    expected = {
        "learning_rate": 1e-5,
        "logging_steps": 10,
        "remove_unused_columns": False,
        "model_init_kwargs": None,
        "dataset_num_proc": None,
        "max_length": 1024,
        "max_prompt_length": None,
        "truncation_mode": "keep_start",
        "pad_to_multiple_of": None,
        "flow_reference": "initial",
        "precompute_ref_log_probs": True,
        "lambda_value": 0.1,
        "gamma": 0.1,
        "value_head_learning_rate": None,
        "subtb_max_span": None,
        "theta": 0.5,
        "tau": 1.0,
        "positive_system_prompt": DEFAULT_POSITIVE_SYSTEM_PROMPT,
        "negative_system_prompt": DEFAULT_NEGATIVE_SYSTEM_PROMPT,
        "reward_batch_size": 8,
        "guidance_alpha": 1.0,
        "guidance_beta": DEFAULT_GUIDANCE_BETA,
    }
    assert {name: getattr(args, name) for name in expected} == expected
    assert (DEFAULT_GUIDANCE_BETA, UNRECORDED_BETA, FLOW_REFERENCES) == (2.0, 0.5, ("initial", "none"))


def test_to_token_reward_config_carries_stage_one_settings(tmp_path):
    args = make_args(
        tmp_path,
        theta=0.3,
        tau=0.7,
        positive_system_prompt="Be thorough.",
        negative_system_prompt="Be terse.",
        reward_batch_size=5,
        max_length=128,
        max_prompt_length=32,
        truncation_mode="keep_end",
    )
    config = args.to_token_reward_config()
    assert isinstance(config, TokenRewardConfig)
    assert (config.theta, config.tau, config.batch_size) == (0.3, 0.7, 5)
    assert (config.positive_system_prompt, config.negative_system_prompt) == ("Be thorough.", "Be terse.")
    assert (config.max_length, config.max_prompt_length, config.truncation_mode) == (128, 32, "keep_end")
    assert (config.eps, config.face_template) == (1e-6, DEFAULT_FACE_TEMPLATE)  # not TFPOConfig fields: defaults


def test_dataclasses_replace_revalidates(tmp_path):
    args = make_args(tmp_path, model_init_kwargs='{"dtype": "float32"}')
    assert dataclasses.replace(args, theta=0.2).model_init_kwargs == {"dtype": "float32"}
    with pytest.raises(ValueError, match="`theta`"):
        dataclasses.replace(args, theta=1.2)
