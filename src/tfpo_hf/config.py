"""Configuration: `TokenRewardConfig` (stage 1) and `TFPOConfig` (stage 2, a `TrainingArguments`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from transformers import TrainingArguments

DEFAULT_POSITIVE_SYSTEM_PROMPT = (
    "You are a helpful, accurate and polite assistant. "
    "Give complete, well-explained answers that cover every important detail."
)
DEFAULT_NEGATIVE_SYSTEM_PROMPT = (
    "You are an assistant that gives minimal, vague answers. Omit important details and do not explain."
)
DEFAULT_GUIDANCE_BETA = 2.0  # measured on the demo task's validation prompts: docs/results.md
UNRECORDED_BETA = 0.5  # the weight of a doctor that records no decoding defaults (a plain causal LM, an old doctor)
DEFAULT_FACE_TEMPLATE = "{system_prompt}\n\n{prompt}"
TRUNCATION_MODES = ("keep_start", "keep_end")
FLOW_REFERENCES = ("initial", "none")


@dataclass
class TokenRewardConfig:
    """Settings of stage 1: how the patient's two faces turn responses into sparse, signed token rewards.

    Delta_t = |log p_pos(y_t) - log p_neg(y_t)|, S_t = tanh(Delta_t / ((mean_j Delta_j + eps) * tau)),
    r_t = sign * S_t * 1[S_t > theta] (sign = +1 chosen, -1 rejected).

    Args:
        positive_system_prompt: system prompt of the positive face (helpful, accurate, polite, complete).
        negative_system_prompt: system prompt of the negative face (minimal, vague, omits details).
        theta: sparsity threshold on S_t; tokens with S_t <= theta get reward 0. tanh(1) ~ 0.76 keeps only
            tokens whose Delta is above the response's mean; the default 0.5 keeps Delta > 0.55 x mean.
        tau: temperature of the normalisation (larger tau, smaller S).
        eps: added to the mean Delta so a response the faces agree on entirely gives S = 0, not NaN.
        batch_size: sequences per patient forward (each example costs 4: two faces x chosen/rejected).
        max_length: maximum doctor sequence length (prompt + response tokens); longer responses are truncated.
        max_prompt_length: prompts longer than this keep their last tokens (None: no limit).
        truncation_mode: `keep_start` cuts the end of the response; `keep_end` first drops prompt tokens from
            the start (at least one is kept), then cuts the response.
        face_template: for plain-text prompts, how a face's system prompt and the prompt are joined (chat
            datasets use the tokenizer's chat template with the face as the system message instead).
    """

    positive_system_prompt: str = DEFAULT_POSITIVE_SYSTEM_PROMPT
    negative_system_prompt: str = DEFAULT_NEGATIVE_SYSTEM_PROMPT
    theta: float = 0.5
    tau: float = 1.0
    eps: float = 1e-6
    batch_size: int = 8
    max_length: int | None = 1024
    max_prompt_length: int | None = None
    truncation_mode: str = "keep_start"
    face_template: str = DEFAULT_FACE_TEMPLATE

    def __post_init__(self):
        if self.truncation_mode not in TRUNCATION_MODES:
            raise ValueError(f"truncation_mode must be one of {TRUNCATION_MODES}, got {self.truncation_mode!r}.")
        if not 0.0 <= self.theta < 1.0:
            raise ValueError(f"theta must be in [0, 1) since S_t = tanh(...) is; got {self.theta}.")
        if self.tau <= 0 or self.eps <= 0:
            raise ValueError(f"tau and eps must be positive, got tau={self.tau}, eps={self.eps}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}.")
        if "{system_prompt}" not in self.face_template or "{prompt}" not in self.face_template:
            raise ValueError("face_template must contain both '{system_prompt}' and '{prompt}'.")


@dataclass
class TFPOConfig(TrainingArguments):
    """Training arguments for `TFPOTrainer`: `transformers.TrainingArguments` plus TRL-style data fields, the
    TFPO loss fields and the stage-1 reward fields used when the trainer scores the dataset itself.

    Defaults that differ from `TrainingArguments`: `learning_rate=1e-5`, `logging_steps=10`,
    `remove_unused_columns=False` (the collator picks its columns).
    """

    learning_rate: float = field(default=1e-5, metadata={"help": "The initial learning rate for AdamW."})
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the TFPO collator selects the token-reward columns itself."}
    )

    # Model and data (TRL naming)
    model_init_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Keyword arguments for `AutoModelForCausalLM.from_pretrained` when `model` is a string."},
    )
    dataset_num_proc: int | None = field(default=None, metadata={"help": "Processes for dataset preprocessing."})
    max_length: int | None = field(
        default=1024, metadata={"help": "Maximum length of prompt + response for the doctor; longer ones are truncated."}
    )
    max_prompt_length: int | None = field(
        default=None, metadata={"help": "Maximum prompt length; longer prompts keep their last tokens."}
    )
    truncation_mode: str = field(
        default="keep_start",
        metadata={"help": "`keep_start` cuts the end of the response; `keep_end` drops prompt tokens first.",
                  "choices": list(TRUNCATION_MODES)},
    )
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "Pad batches to a multiple of this."})

    # TFPO loss
    flow_reference: str = field(
        default="initial",
        metadata={"help": "Reference policy pi_ref in the prefix score log Q(s_t) = sum_k [r_k + log pi_ref(y_k | s_k-1)]: "
                  "`initial` = the doctor's initial weights (a LoRA doctor's base, a full-weight doctor's frozen "
                  "start), decoded by ratio guidance; `none` = the paper's literal flow (log Q = cumulative reward), "
                  "kept as an ablation: measured, it does not steer.",
                  "choices": list(FLOW_REFERENCES)},
    )
    precompute_ref_log_probs: bool = field(
        default=True,
        metadata={"help": "Compute the reference log-probabilities once, before training, into dataset columns (as "
                  "TRL's DPO does): one no-grad forward per pair instead of one per pair and epoch, and no frozen "
                  "copy of a full-weight doctor in memory. False: per batch (LoRA: adapter disabled)."},
    )
    lambda_value: float = field(default=0.1, metadata={"help": "Weight of the value-discrimination loss."})
    gamma: float = field(default=0.1, metadata={"help": "Margin of the value-discrimination hinge loss."})
    value_head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the value head (None: `learning_rate`). log V has to track the doctor's "
                  "cumulative log-probability, far from its zero start; a higher rate lets it catch up."},
    )
    subtb_max_span: int | None = field(
        default=None, metadata={"help": "Only subtrajectories of at most this many tokens (None: all pairs)."}
    )

    # Stage 1 rewards, used when the training dataset has no token rewards yet
    theta: float = field(default=0.5, metadata={"help": "Sparsity threshold on the normalised reward S_t."})
    tau: float = field(default=1.0, metadata={"help": "Temperature of the reward normalisation."})
    positive_system_prompt: str = field(
        default=DEFAULT_POSITIVE_SYSTEM_PROMPT, metadata={"help": "System prompt of the patient's positive face."}
    )
    negative_system_prompt: str = field(
        default=DEFAULT_NEGATIVE_SYSTEM_PROMPT, metadata={"help": "System prompt of the patient's negative face."}
    )
    reward_batch_size: int = field(default=8, metadata={"help": "Sequences per patient forward when scoring."})

    # Decoding defaults saved with the doctor (`DoctorLogitsProcessor` uses them when a call gives no weights)
    guidance_alpha: float = field(default=1.0, metadata={"help": "Default patient weight alpha saved with the doctor."})
    guidance_beta: float = field(
        default=DEFAULT_GUIDANCE_BETA,
        metadata={"help": "Default doctor weight beta saved with the doctor: ratio guidance log p_patient + beta * "
                  "(log p_doctor - log p_ref) for `flow_reference=initial`, the mix alpha * log p_patient + beta * "
                  "log p_doctor for `none`. The default comes from the sweep in docs/results.md."},
    )

    def __post_init__(self):
        if self.truncation_mode not in TRUNCATION_MODES:
            raise ValueError(f"truncation_mode must be one of {TRUNCATION_MODES}, got {self.truncation_mode!r}.")
        if self.flow_reference not in FLOW_REFERENCES:
            raise ValueError(f"flow_reference must be one of {FLOW_REFERENCES}, got {self.flow_reference!r}.")
        super().__post_init__()

    def to_token_reward_config(self) -> TokenRewardConfig:
        """The stage-1 settings carried by these training arguments."""
        shared = {f.name for f in fields(TokenRewardConfig)} & {f.name for f in fields(self)}
        return TokenRewardConfig(batch_size=self.reward_batch_size, **{name: getattr(self, name) for name in shared})
