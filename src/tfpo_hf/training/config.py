"""Stage-2 configuration: `TFPOConfig`, a `TrainingArguments` for `TFPOTrainer`.

Its stage-1 fields (the patient's two faces, the reward's `theta` and `tau`, and the truncation settings) come from
`_TokenRewardFields`, shared with `TokenRewardConfig`, in `tfpo_hf.rewards.config`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from transformers import TrainingArguments

from ..rewards.config import TokenRewardConfig, _TokenRewardFields
from ..utils.validation import (
    _check_choice,
    _check_finite,
    _check_int_at_least,
    _check_positive,
    _invalid,
    _is_real,
)


DEFAULT_GUIDANCE_BETA = 2.0  # measured on the demo task's validation prompts: docs/results.md
FLOW_REFERENCES = ("initial", "none")

# Help strings are rendered by argparse (`--help`), which %-formats them: never put a bare "%" in one.


# ---------------------------------------------------------------------------------------------------------------
# Stage 2


@dataclass
class TFPOConfig(_TokenRewardFields, TrainingArguments):
    r"""
    Configuration class for [`TFPOTrainer`]: the TFPO loss, the data preprocessing, the stage-1 reward settings used
    when the trainer scores a dataset itself, and the decoding defaults saved with the doctor.

    This class includes only the parameters that are specific to TFPO training. For a full list of training
    arguments, please refer to the [`~transformers.TrainingArguments`] documentation. Note that default values in
    this class may differ from those in [`~transformers.TrainingArguments`].

    Using [`~transformers.HfArgumentParser`] (or TRL's `TrlParser`, as `tfpo-hf train` does) we can turn this class
    into [argparse](https://docs.python.org/3/library/argparse#module-argparse) arguments that can be specified on
    the command line.

    Args:
        > Parameters that control the model

        model_init_kwargs (`dict[str, Any]` or `str`, *optional*):
            Keyword arguments for `DoctorModel.from_pretrained` (and so
            [`~transformers.AutoModelForCausalLM.from_pretrained`]), used when the `model` argument of the
            [`TFPOTrainer`] is a string. On the command line, a JSON object: `--model_init_kwargs '{"dtype":
            "bfloat16"}'`.

        > Parameters that control the data preprocessing

        dataset_num_proc (`int`, *optional*):
            Number of processes to use for scoring and tokenizing the dataset.
        max_length (`int` or `None`, *optional*, defaults to `1024`):
            Maximum length of prompt + completion (tokens) for the doctor, at least 2. Longer pairs are truncated as
            `truncation_mode` says. If `None`, no truncation is applied.
        max_prompt_length (`int` or `None`, *optional*, defaults to `None`):
            Maximum prompt length (tokens), at least 1; longer prompts keep their last tokens. If `None`, no limit.
        truncation_mode (`str`, *optional*, defaults to `"keep_start"`):
            Truncation mode when prompt + completion exceeds `max_length`: `"keep_start"` cuts the end of the
            completion; `"keep_end"` first drops prompt tokens from the start (at least one is kept), then cuts the
            completion.
        pad_to_multiple_of (`int`, *optional*):
            If set, the collator pads each batch's sequences to a multiple of this value.

        > Parameters that control the TFPO loss

        flow_reference (`str`, *optional*, defaults to `"initial"`):
            Reference policy pi_ref in the prefix score log Q(s_t) = sum_k [r_k + log pi_ref(y_k | s_k-1)]:
            `"initial"` = the doctor's initial weights (a LoRA doctor's base, a full-weight doctor's frozen start),
            decoded by ratio guidance; `"none"` = the paper's literal flow (log Q = cumulative reward), kept as an
            ablation: measured, it does not steer.
        precompute_ref_log_probs (`bool`, *optional*, defaults to `True`):
            Whether to compute the reference log-probabilities once, before training, into dataset columns (as
            TRL's DPO does): one no-grad forward per pair instead of one per pair and epoch, and no frozen copy of a
            full-weight doctor in memory. If `False`, they are computed per batch (LoRA: adapter disabled).
        lambda_value (`float`, *optional*, defaults to `0.1`):
            Weight of the value-discrimination loss in L = L_SubTB + lambda_value * L_value; >= 0 (0 turns it off).
        gamma (`float`, *optional*, defaults to `0.1`):
            Margin of the value-discrimination hinge loss relu(gamma - (log V_chosen - log V_rejected)).
        value_head_learning_rate (`float`, *optional*):
            Learning rate of the value head. If `None`, `learning_rate`. log V has to track the doctor's cumulative
            log-probability, far from its zero start; a higher rate lets it catch up.
        subtb_max_span (`int`, *optional*):
            If set (at least 1), only subtrajectories of at most this many tokens enter the subtrajectory-balance
            loss. If `None`, every pair of states does.

        > Parameters that control stage-1 token rewards

        Used when the training dataset has no token rewards yet and the trainer scores it with the patient;
        `to_token_reward_config()` returns them as a [`TokenRewardConfig`].

        positive_system_prompt (`str`, *optional*, defaults to `DEFAULT_POSITIVE_SYSTEM_PROMPT`):
            System prompt of the patient's positive face (helpful, accurate, polite, complete).
        negative_system_prompt (`str`, *optional*, defaults to `DEFAULT_NEGATIVE_SYSTEM_PROMPT`):
            System prompt of the patient's negative face (minimal, vague, omits details).
        theta (`float`, *optional*, defaults to `0.5`):
            Sparsity threshold on the normalised reward S_t, in [0, 1); tokens with S_t <= theta get reward 0.
        tau (`float`, *optional*, defaults to `1.0`):
            Temperature of the reward normalisation, > 0.
        reward_batch_size (`int`, *optional*, defaults to `8`):
            Sequences per patient forward when scoring, at least 1 (`TokenRewardConfig.batch_size`).

        > Decoding defaults saved with the doctor

        [`DoctorLogitsProcessor`] and [`GuidedModel`] use them when a call gives no weights.

        guidance_alpha (`float`, *optional*, defaults to `1.0`):
            Default weight alpha of the patient's log-probabilities; finite.
        guidance_beta (`float`, *optional*, defaults to `DEFAULT_GUIDANCE_BETA` = `2.0`):
            Default doctor weight beta, finite: ratio guidance log p_patient + beta * (log p_doctor - log p_ref) for
            `flow_reference="initial"`, the mix alpha * log p_patient + beta * log p_doctor for `"none"`. The default
            comes from the sweep in docs/results.md.

    > [!NOTE]
    > These parameters have default values different from [`~transformers.TrainingArguments`]:
    > - `learning_rate`: Defaults to `1e-5` instead of `5e-5`.
    > - `logging_steps`: Defaults to `10` instead of `500`.
    > - `remove_unused_columns`: Defaults to `False` instead of `True` (the TFPO collator picks its columns).

    Examples:

    ```python
    >>> from transformers import HfArgumentParser
    >>> from tfpo_hf import TFPOConfig

    >>> args = TFPOConfig("my-doctor", lambda_value=0.5, report_to="none")
    >>> args.flow_reference, args.lambda_value, args.gamma, args.learning_rate, args.guidance_beta
    ('initial', 0.5, 0.1, 1e-05, 2.0)
    >>> args.to_token_reward_config().theta  # the stage-1 settings, as a TokenRewardConfig
    0.5

    >>> # From command-line flags, as `tfpo-hf train` reads them
    >>> parser = HfArgumentParser(TFPOConfig)
    >>> (args,) = parser.parse_args_into_dataclasses(
    ...     ["--output_dir", "my-doctor", "--flow_reference", "none", "--theta", "0.3", "--report_to", "none",
    ...      "--model_init_kwargs", '{"dtype": "bfloat16"}']
    ... )
    >>> args.flow_reference, args.theta, args.model_init_kwargs
    ('none', 0.3, {'dtype': 'bfloat16'})

    ```
    """

    # Parameters whose default values are overridden from TrainingArguments
    learning_rate: float = field(default=1e-5, metadata={"help": "The initial learning rate for AdamW."})
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the TFPO collator selects the token-reward columns itself."}
    )

    # Parameters that control the model
    model_init_kwargs: dict | str | None = field(
        default=None,
        metadata={
            "help": "Keyword arguments for `DoctorModel.from_pretrained` (`AutoModelForCausalLM.from_pretrained`), "
            "used when the `model` argument of the `TFPOTrainer` is a string. On the command line, a JSON object, "
            'e.g. \'{"dtype": "bfloat16"}\'.'
        },
    )

    # Parameters that control the data preprocessing (max_length, max_prompt_length, truncation_mode: shared)
    dataset_num_proc: int | None = field(
        default=None, metadata={"help": "Number of processes to use for scoring and tokenizing the dataset."}
    )
    pad_to_multiple_of: int | None = field(
        default=None,
        metadata={"help": "If set, the collator pads each batch's sequences to a multiple of this value."},
    )

    # Parameters that control the TFPO loss
    flow_reference: str = field(
        default="initial",
        metadata={
            "help": "Reference policy pi_ref in the prefix score log Q(s_t) = sum_k [r_k + log pi_ref(y_k | s_k-1)]: "
            "`initial` = the doctor's initial weights (a LoRA doctor's base, a full-weight doctor's frozen start), "
            "decoded by ratio guidance; `none` = the paper's literal flow (log Q = cumulative reward), kept as an "
            "ablation: measured, it does not steer.",
            "choices": list(FLOW_REFERENCES),
        },
    )
    precompute_ref_log_probs: bool = field(
        default=True,
        metadata={
            "help": "Compute the reference log-probabilities once, before training, into dataset columns (as "
            "TRL's DPO does): one no-grad forward per pair instead of one per pair and epoch, and no frozen "
            "copy of a full-weight doctor in memory. False: per batch (LoRA: adapter disabled)."
        },
    )
    lambda_value: float = field(
        default=0.1,
        metadata={
            "help": "Weight of the value-discrimination loss in L = L_SubTB + lambda_value * L_value; >= 0 (0 "
            "turns it off)."
        },
    )
    gamma: float = field(default=0.1, metadata={"help": "Margin of the value-discrimination hinge loss."})
    value_head_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the value head (None: `learning_rate`). log V has to track the doctor's "
            "cumulative log-probability, far from its zero start; a higher rate lets it catch up."
        },
    )
    subtb_max_span: int | None = field(
        default=None,
        metadata={"help": "Only subtrajectories of at most this many tokens, at least 1 (None: all pairs of states)."},
    )

    # Parameters that control stage-1 token rewards (the faces, theta and tau: shared)
    reward_batch_size: int = field(
        default=8, metadata={"help": "Sequences per patient forward when scoring, at least 1."}
    )

    # Decoding defaults saved with the doctor (`DoctorLogitsProcessor` uses them when a call gives no weights)
    guidance_alpha: float = field(
        default=1.0, metadata={"help": "Default patient weight alpha saved with the doctor."}
    )
    guidance_beta: float = field(
        default=DEFAULT_GUIDANCE_BETA,
        metadata={
            "help": "Default doctor weight beta saved with the doctor: ratio guidance log p_patient + beta * "
            "(log p_doctor - log p_ref) for `flow_reference=initial`, the mix alpha * log p_patient + beta * "
            "log p_doctor for `none`. The default comes from the sweep in docs/results.md."
        },
    )

    def __post_init__(self):
        self._validate_token_reward_fields()
        self.model_init_kwargs = _parse_model_init_kwargs(self.model_init_kwargs)
        _check_choice("flow_reference", self.flow_reference, FLOW_REFERENCES)
        _check_finite(
            "guidance_alpha", self.guidance_alpha, "It is the patient's weight at decoding; the default is 1.0."
        )
        _check_finite(
            "guidance_beta",
            self.guidance_beta,
            f"It is the doctor's weight at decoding; the default is {DEFAULT_GUIDANCE_BETA}.",
        )
        if not _is_real(self.lambda_value) or not math.isfinite(self.lambda_value) or self.lambda_value < 0:
            raise _invalid(
                "lambda_value",
                self.lambda_value,
                "a finite number >= 0",
                "It weights the value-discrimination loss; 0 turns it off, the default is 0.1.",
            )
        _check_finite("gamma", self.gamma, "It is the hinge margin of the value loss; the default is 0.1.")
        _check_int_at_least(
            "subtb_max_span", self.subtb_max_span, 1, "Use None to count every subtrajectory.", optional=True
        )
        _check_int_at_least(
            "reward_batch_size", self.reward_batch_size, 1, "It is the number of sequences per patient forward."
        )
        self._validate_optional_numbers()
        super().__post_init__()

    def _validate_optional_numbers(self) -> None:
        """The numbers that may be None, used deep inside the optimizer, the collator and `datasets.map`."""
        _check_positive(
            "value_head_learning_rate",
            self.value_head_learning_rate,
            "Use None for `learning_rate`.",
            optional=True,
        )
        _check_int_at_least(
            "pad_to_multiple_of", self.pad_to_multiple_of, 1, "Use None for no rounding.", optional=True
        )
        _check_int_at_least(
            "dataset_num_proc", self.dataset_num_proc, 1, "Use None for the main process only.", optional=True
        )

    def to_token_reward_config(self) -> TokenRewardConfig:
        """The stage-1 settings carried by these training arguments (`reward_batch_size` becomes `batch_size`)."""
        shared = {f.name for f in fields(_TokenRewardFields)}
        return TokenRewardConfig(batch_size=self.reward_batch_size, **{name: getattr(self, name) for name in shared})


def _parse_model_init_kwargs(value: Any) -> dict | None:
    """`model_init_kwargs` as a dict: the CLI passes it as a JSON string (as TRL's configs accept it)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"`model_init_kwargs` must be a JSON object when given as a string, got {value!r} ({error}). "
                'Example: --model_init_kwargs \'{"dtype": "bfloat16"}\'.'
            ) from None
        if not isinstance(value, dict):
            raise _invalid(
                "model_init_kwargs",
                value,
                "a JSON object (a dict of keyword arguments)",
                'Example: --model_init_kwargs \'{"dtype": "bfloat16"}\'.',
            )
    elif value is not None and not isinstance(value, dict):
        raise _invalid(
            "model_init_kwargs",
            value,
            "None, a dict or a JSON object string",
            "It is passed as keyword arguments to `DoctorModel.from_pretrained`.",
        )
    return value
