"""Stage-1 configuration: `TokenRewardConfig`, and `_TokenRewardFields`, the fields it shares with `TFPOConfig`.

The fields the two stages share (the patient's two faces, the reward's `theta` and `tau`, and the truncation
settings) are declared once, in `_TokenRewardFields`, which both classes inherit, and are validated once, by
`_TokenRewardFields._validate_token_reward_fields`.

This module imports neither transformers nor torch: a stage-1 user does not pay for `TrainingArguments`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from ..utils.validation import (
    _check_choice,
    _check_int_at_least,
    _check_positive,
    _invalid,
    _is_real,
    _numbers_from_scalars,
)


DEFAULT_POSITIVE_SYSTEM_PROMPT = (
    "You are a helpful, accurate and polite assistant. "
    "Give complete, well-explained answers that cover every important detail."
)
DEFAULT_NEGATIVE_SYSTEM_PROMPT = (
    "You are an assistant that gives minimal, vague answers. Omit important details and do not explain."
)
DEFAULT_FACE_TEMPLATE = "{system_prompt}\n\n{prompt}"
FACE_TEMPLATE_PLACEHOLDERS = ("{system_prompt}", "{prompt}")  # what `face_template.format` fills
TRUNCATION_MODES = ("keep_start", "keep_end")

# Help strings are rendered by argparse (`--help`), which %-formats them: never put a bare "%" in one.


# ---------------------------------------------------------------------------------------------------------------
# The fields shared by stage 1 (`TokenRewardConfig`) and stage 2 (`TFPOConfig`).


@dataclass
class _TokenRewardFields:
    """The stage-1 fields that `TokenRewardConfig` and `TFPOConfig` share: declared, documented and validated once.

    A mixin: it has no `__post_init__`, so it stays out of `TrainingArguments.__post_init__`'s way; each config calls
    `_validate_token_reward_fields()` from its own `__post_init__`. `TFPOConfig` lists it before
    `TrainingArguments`, so `output_dir` stays its first (positional) field.
    """

    positive_system_prompt: str = field(
        default=DEFAULT_POSITIVE_SYSTEM_PROMPT,
        metadata={"help": "System prompt of the patient's positive face (helpful, accurate, polite, complete)."},
    )
    negative_system_prompt: str = field(
        default=DEFAULT_NEGATIVE_SYSTEM_PROMPT,
        metadata={"help": "System prompt of the patient's negative face (minimal, vague, omits details)."},
    )
    theta: float = field(
        default=0.5,
        metadata={
            "help": "Sparsity threshold on the normalised reward S_t = tanh(Delta_t / ((mean Delta + eps) * tau)), in "
            "[0, 1): tokens with S_t <= theta get reward 0. The default 0.5 keeps tokens whose Delta is above 0.55 "
            "times the response's mean."
        },
    )
    tau: float = field(
        default=1.0,
        metadata={"help": "Temperature of the reward normalisation, > 0: a larger tau gives smaller S_t."},
    )
    max_length: int | None = field(
        default=1024,
        metadata={
            "help": "Maximum length of prompt + response (tokens) for the doctor, at least 2; longer pairs are "
            "truncated as `truncation_mode` says. None: no limit."
        },
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={
            "help": "Maximum prompt length (tokens), at least 1; longer prompts keep their last tokens. None: no "
            "limit."
        },
    )
    truncation_mode: str = field(
        default="keep_start",
        metadata={
            "help": "How a pair longer than `max_length` is cut: `keep_start` cuts the end of the response; "
            "`keep_end` first drops prompt tokens from the start (at least one is kept), then cuts the response.",
            "choices": list(TRUNCATION_MODES),
        },
    )

    def _validate_token_reward_fields(self) -> None:
        """Check the shared fields, after turning numpy scalars and 0-d tensors in any field into Python numbers.

        The system prompts are never formatted (they go into a chat message, or into `face_template` as a value), so
        braces in them are kept as they are.
        """
        _numbers_from_scalars(self)
        _check_choice("truncation_mode", self.truncation_mode, TRUNCATION_MODES)
        if not _is_real(self.theta) or not 0.0 <= self.theta < 1.0:
            raise _invalid(
                "theta",
                self.theta,
                "in [0, 1)",
                "S_t = tanh(...) lies in [0, 1), so theta >= 1 would zero every reward; the default is 0.5.",
            )
        _check_positive("tau", self.tau, "It divides the normalised gap; the default is 1.0.")
        _check_int_at_least(
            "max_length",
            self.max_length,
            2,
            "Prompt and response need at least one token each; use None for no limit.",
            optional=True,
        )
        _check_int_at_least(
            "max_prompt_length", self.max_prompt_length, 1, "Use None for no prompt limit.", optional=True
        )


# ---------------------------------------------------------------------------------------------------------------
# Stage 1


@dataclass
class TokenRewardConfig(_TokenRewardFields):
    r"""
    Configuration of stage 1, [`TokenRewardScorer`]: how the patient's two faces turn preference responses into
    sparse, signed token rewards.

    Delta_t = |log p_pos(y_t) - log p_neg(y_t)|, S_t = tanh(Delta_t / ((mean_j Delta_j + eps) * tau)),
    r_t = sign * S_t * 1[S_t > theta] (sign = +1 chosen, -1 rejected).

    Using [`~transformers.HfArgumentParser`] (or TRL's `TrlParser`, as `tfpo-hf rewards` does) this class turns into
    command-line arguments. `TFPOConfig` carries the same fields (`batch_size` there is `reward_batch_size`) for a
    trainer that scores its dataset itself; `TFPOConfig.to_token_reward_config()` builds this class from them.

    Parameters:
        > The patient's faces and the reward

        positive_system_prompt (`str`, *optional*, defaults to `DEFAULT_POSITIVE_SYSTEM_PROMPT`):
            System prompt of the positive face (helpful, accurate, polite, complete).
        negative_system_prompt (`str`, *optional*, defaults to `DEFAULT_NEGATIVE_SYSTEM_PROMPT`):
            System prompt of the negative face (minimal, vague, omits details).
        theta (`float`, *optional*, defaults to `0.5`):
            Sparsity threshold on S_t, in [0, 1); tokens with S_t <= theta get reward 0. tanh(1) ~ 0.76 keeps only
            tokens whose Delta is above the response's mean; the default 0.5 keeps Delta > 0.55 x mean.
        tau (`float`, *optional*, defaults to `1.0`):
            Temperature of the normalisation, > 0 (larger tau, smaller S).
        eps (`float`, *optional*, defaults to `1e-6`):
            Added to the mean Delta, > 0, so a response the faces agree on entirely gives S = 0, not NaN.
        face_template (`str`, *optional*, defaults to `"{system_prompt}\n\n{prompt}"`):
            For plain-text prompts, how a face's system prompt and the prompt are joined; must contain both
            `{system_prompt}` and `{prompt}` and no other placeholder (a literal brace is written `{{` or `}}`).
            Chat datasets use the tokenizer's chat template with the face as the system message instead. The system
            prompts themselves are used verbatim: braces in them are kept.

        > Batching and truncation

        batch_size (`int`, *optional*, defaults to `8`):
            Sequences per patient forward, at least 1 (each example costs 4: two faces x chosen/rejected).
        max_length (`int` or `None`, *optional*, defaults to `1024`):
            Maximum doctor sequence length (prompt + response tokens), at least 2; longer pairs are truncated as
            `truncation_mode` says. `None`: no limit.
        max_prompt_length (`int` or `None`, *optional*, defaults to `None`):
            Prompts longer than this keep their last tokens; at least 1. `None`: no limit.
        truncation_mode (`str`, *optional*, defaults to `"keep_start"`):
            `"keep_start"` cuts the end of the response; `"keep_end"` first drops prompt tokens from the start (at
            least one is kept), then cuts the response.
    """

    eps: float = field(
        default=1e-6,
        metadata={
            "help": "Added to the mean Delta, > 0, so a response the faces agree on entirely gives S = 0, not NaN."
        },
    )
    batch_size: int = field(
        default=8,
        metadata={
            "help": "Sequences per patient forward, at least 1 (each example costs 4: two faces x chosen/rejected)."
        },
    )
    face_template: str = field(
        default=DEFAULT_FACE_TEMPLATE,
        metadata={
            "help": "For plain-text prompts, how a face's system prompt and the prompt are joined; must contain "
            "'{system_prompt}' and '{prompt}' and no other placeholder ('{{' is a literal brace). Chat datasets use "
            "the chat template with the face as system message."
        },
    )

    def __post_init__(self):
        self._validate_token_reward_fields()
        _check_positive("eps", self.eps, "It keeps S_t finite when the faces agree; the default is 1e-6.")
        _check_int_at_least("batch_size", self.batch_size, 1, "It is the number of sequences per patient forward.")
        _check_face_template(self.face_template)


def _check_face_template(template: str) -> None:
    """`face_template` is formatted with `system_prompt=` and `prompt=`: it must hold both placeholders and no
    other (another one would fail at scoring time, with a `KeyError` naming no field)."""
    requirement = f"a string containing both {FACE_TEMPLATE_PLACEHOLDERS[0]!r} and {FACE_TEMPLATE_PLACEHOLDERS[1]!r}"
    fix = f"Write a literal brace as '{{{{' or '}}}}'; the default is {DEFAULT_FACE_TEMPLATE!r}."
    if not isinstance(template, str):
        raise _invalid("face_template", template, requirement, fix)
    try:
        placeholders = {"{" + name + "}" for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:  # a lone brace
        raise _invalid("face_template", template, f"{requirement} ({error})", fix) from None
    unknown = sorted(placeholders - set(FACE_TEMPLATE_PLACEHOLDERS))
    if unknown:
        raise ValueError(
            f"`face_template` {template!r} has the placeholder(s) {', '.join(unknown)}, which nothing fills: the "
            f"accepted placeholders are {' and '.join(FACE_TEMPLATE_PLACEHOLDERS)}. {fix}"
        )
    if not placeholders >= set(FACE_TEMPLATE_PLACEHOLDERS):
        raise _invalid("face_template", template, requirement, fix)
