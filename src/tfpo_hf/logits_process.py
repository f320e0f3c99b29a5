"""Decoding-time guidance of a frozen patient LM by one or more doctor LMs (LLMdoctor / TFPO, stage 3)."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from transformers import LogitsProcessor

from .adapters import has_adapter
from .doctor_config import DoctorConfig
from .hub_files import hub_kwargs_of
from .incremental import IncrementalForward, Stream
from .logprobs import log_softmax_keeping_masked


if TYPE_CHECKING:
    from transformers import PreTrainedModel

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_TOKENIZER_KWARGS = ("cache_dir", "local_files_only", "revision", "subfolder", "token", "trust_remote_code")
PATIENT, INITIAL, BASE = "patient", "initial", "base"  # the guided patient; the doctor's initial weights; a LoRA base


def _load_causal_lm(name_or_path, **from_pretrained_kwargs) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM  # here, not at import: the processor imports fast

    return AutoModelForCausalLM.from_pretrained(name_or_path, **from_pretrained_kwargs)


def recorded_weights(configs: list[DoctorConfig], betas, alpha) -> tuple[float | Sequence[float], float]:
    """The weights to decode with: those given, else each doctor's recorded `beta` (`UNRECORDED_BETA` when it records
    none) and the doctors' recorded `alpha` when they agree (else 1)."""
    if betas is None:
        betas = [config.decoding_beta for config in configs]
    if alpha is None:
        alphas = {config.alpha for config in configs if config.alpha is not None}
        alpha = alphas.pop() if len(alphas) == 1 else 1.0
    return betas, float(alpha)


def _saved_tokenizer(source: str, hub_lookup: bool, from_pretrained_kwargs: dict):
    """The tokenizer saved with a doctor checkpoint at `source` (a local directory, or a Hub id if `hub_lookup`), or
    `None` when there is none."""
    kwargs = {key: value for key, value in from_pretrained_kwargs.items() if key in _TOKENIZER_KWARGS}
    if os.path.isdir(source):
        folder = os.path.join(source, kwargs.get("subfolder", ""))
        if not any(os.path.isfile(os.path.join(folder, name)) for name in _TOKENIZER_FILES):
            return None
    elif not hub_lookup:
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError:
        return None


class DoctorLogitsProcessor(LogitsProcessor):
    r"""
    [`LogitsProcessor`] that steers a frozen *patient* model with one or more *doctor* causal LMs (LLMdoctor): the
    next-token scores become

        log p(y | s_t) = alpha * log p_patient(y | s_t) + sum_i beta_i * [log p_doctor_i(y | s_t) - log p_ref_i(y | s_t)]

    computed over the vocabulary the models share. A doctor with a reference (*ratio guidance*, the default of a
    reference-anchored TFPO doctor) adds beta times its learned token reward, the log-ratio to the policy it was
    trained against; a doctor without one adds beta times its log-probabilities (the *mix*, log p_ref_i = 0: the
    paper's literal decoding, and GenARM's). A reference is one of:

    - `"patient"`: the patient's own log-probabilities, at no extra cost. Right for a doctor that started as a copy
      of this patient (a LoRA copy, `DoctorModel.from_patient`): then ratio guidance is the mix with
      `alpha - beta` on the patient.
    - `"initial"`: the weights the doctor started from, whatever the patient: a LoRA doctor's base (its adapter
      disabled: one more cached forward of the same weights, also accepted as `"base"`), or for a full-weight doctor
      the model its `tfpo_config.json` names (`reference_name_or_path`, cut to `reference_num_layers`). Use it to
      guide a patient other than the one the doctor was a copy of (weak-to-strong).
    - a model, or a path / Hub id: any causal LM sharing the vocabulary.

    Weights and references not given are read from each doctor's `tfpo_config.json` (`TFPOTrainer` records ratio
    guidance, `"patient"` or `"initial"`, and the measured default beta there); a doctor that records none is mixed
    in with `beta = 0.5`, `alpha = 1` (as before references existed).

    The result is not renormalised unless `normalize=True`: greedy and beam search only compare tokens, and sampling
    applies a softmax after the processors anyway. With every beta 0 and alpha 1 the scores pass through unchanged.
    With `do_sample=True`, `generate` applies its warpers *after* this processor, to the mixed scores:
    `temperature` divides them, then `top_k` / `top_p` keep the most likely tokens of the mixed distribution. With
    beam search the mixed scores are the beam's per-token log-probabilities. Processors that `generate` builds itself
    (`min_new_tokens`, `repetition_penalty`, bad words...) run *before* this one and reach it through the patient
    scores: their `-inf` masks survive as long as the patient is used (`alpha != 0` or a `"patient"` reference). A
    weight of 0 removes its model from the mix exactly (a `-inf` of that model included); a `-inf` from a model with a
    non-zero weight makes the token impossible.

    Each doctor and each model reference runs with its own [`DynamicCache`] (see `tfpo_hf.incremental`): the prompt
    is prefilled once (`logits_to_keep=1`), then every call feeds it exactly one new token per row, following beam
    reorders, batch expansion (`num_return_sequences`) and left padding. Pass the prompts' attention mask (to the
    constructor or [`~DoctorLogitsProcessor.set_attention_mask`]) when a prompt may start with the pad token. A call
    that does not continue the previous one starts over, so one processor serves many `generate` calls. Doctors run
    under `torch.inference_mode` on the device of the scores (moved there on the first call, unless dispatched with a
    device map); their log-probabilities are cast to the scores' dtype.

    Args:
        doctors (`PreTrainedModel`, `str`, or a list of them):
            Causal LM(s), local path(s) or Hub id(s) of doctor checkpoints (loaded with
            `AutoModelForCausalLM.from_pretrained(..., **from_pretrained_kwargs)`). A `DoctorModel` contributes its
            causal LM and its `tfpo_config`.
        betas (`float` or `list[float]`, *optional*):
            Weight of each doctor's term; one number is used for every doctor. Defaults to each doctor's recorded
            `beta` (0.5 when it records none).
        alpha (`float`, *optional*):
            Weight of the patient's log-probabilities. Defaults to the doctors' recorded `alpha` when they agree,
            else 1.0.
        references (`str`, `PreTrainedModel`, `None`, or a list of them, *optional*):
            Per doctor: `"patient"`, `"initial"`, a model or a path (ratio guidance), or `"none"` (the mix). Defaults
            to what each doctor records.
        tokenizer (`PreTrainedTokenizerBase`, *optional*):
            The patient's tokenizer. When given, a doctor whose vocabulary is smaller than `len(tokenizer)`, or that
            was saved with a different tokenizer, is a `ValueError`; it also provides the default `pad_token_id`.
        attention_mask (`torch.LongTensor` of shape `(batch_size, prompt_length)`, *optional*):
            The attention mask of the prompts passed to `generate`; tokens after `prompt_length` are attended.
        normalize (`bool`, *optional*, defaults to `False`):
            Subtract the log-sum-exp so the mixed scores are log-probabilities.
        pad_token_id (`int`, *optional*):
            Token treated as left padding when no attention mask is given. Defaults to the tokenizer's, else the first
            doctor's generation config or config.

    Examples:

    ```python
    >>> from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList
    >>> from tfpo_hf import DoctorLogitsProcessor

    >>> tokenizer = AutoTokenizer.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct", padding_side="left")
    >>> patient = AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")
    >>> inputs = tokenizer(["Tell me about cats.", "Hi!"], padding=True, return_tensors="pt")
    >>> doctor = DoctorLogitsProcessor("path/to/doctor", tokenizer=tokenizer, attention_mask=inputs.attention_mask)
    >>> out = patient.generate(**inputs, logits_processor=LogitsProcessorList([doctor]), max_new_tokens=32)
    >>> doctor.set_betas(4.0)  # stronger guidance for the next call, same doctor weights
    ```
    """

    supports_continuous_batching = False

    def __init__(
        self,
        doctors,
        betas: float | Sequence[float] | None = None,
        alpha: float | None = None,
        tokenizer=None,
        attention_mask: torch.Tensor | None = None,
        normalize: bool = False,
        pad_token_id: int | None = None,
        references=None,
        **from_pretrained_kwargs,
    ):
        sources = list(doctors) if isinstance(doctors, (list, tuple)) else [doctors]
        if not sources:
            raise ValueError("`doctors` is empty: give at least one doctor model, path or Hub id.")
        self.doctors: list[PreTrainedModel] = []
        recorded: list[DoctorConfig] = []
        for source in sources:
            if isinstance(source, (str, os.PathLike)):
                doctor = _load_causal_lm(source, **from_pretrained_kwargs)
                recorded.append(DoctorConfig.from_pretrained(source, **hub_kwargs_of(from_pretrained_kwargs)))
                source, hub_lookup = str(source), True
            else:
                doctor = getattr(source, "pretrained_model", source)
                recorded.append(DoctorConfig.from_dict(getattr(source, "tfpo_config", None)))
                source, hub_lookup = str(getattr(doctor, "name_or_path", "")), False
            if tokenizer is not None:
                self._check_vocabulary(doctor, tokenizer, _saved_tokenizer(source, hub_lookup, from_pretrained_kwargs))
            self.doctors.append(doctor)
        self.references = self._resolve_references(references, recorded, tokenizer, from_pretrained_kwargs)
        betas, self.alpha = recorded_weights(recorded, betas, alpha)
        self.normalize = normalize
        if pad_token_id is None and tokenizer is not None:
            pad_token_id = tokenizer.pad_token_id
        if pad_token_id is None:
            generation_config = getattr(self.doctors[0], "generation_config", None)
            pad_token_id = getattr(generation_config, "pad_token_id", None)
        if pad_token_id is None:
            pad_token_id = getattr(self.doctors[0].config.get_text_config(), "pad_token_id", None)
        self.pad_token_id = pad_token_id
        self._forward = IncrementalForward(pad_token_id, attention_mask)
        self.betas: list[float] = [0.0] * len(self.doctors)
        self.set_betas(betas)

    def _resolve_references(self, references, recorded: list[DoctorConfig], tokenizer, from_pretrained_kwargs) -> list:
        """One reference per doctor: `None` (the mix), `"patient"`, `"base"` (a LoRA doctor's base) or a model."""
        if references is None:
            references = [
                (PATIENT if config.guidance_reference == PATIENT else INITIAL) if config.uses_ratio else None
                for config in recorded
            ]
        elif isinstance(references, (str, os.PathLike, torch.nn.Module)):
            references = [references] * len(self.doctors)
        if len(references) != len(self.doctors):
            raise ValueError(f"Got {len(references)} references for {len(self.doctors)} doctors.")
        resolved = []
        for doctor, config, reference in zip(self.doctors, recorded, references):
            if reference in (None, "none"):
                resolved.append(None)
            elif reference == PATIENT:
                resolved.append(PATIENT)
            elif reference == BASE and not has_adapter(doctor):
                raise ValueError(
                    f"Doctor {doctor.name_or_path!r} has no PEFT adapter, so it has no base to use as the reference: "
                    "pass `references='initial'` or the model it started from."
                )
            elif reference == BASE:
                resolved.append(BASE)
            elif reference == INITIAL:
                resolved.append(
                    BASE if has_adapter(doctor) else self._initial_model(doctor, config, from_pretrained_kwargs)
                )
            else:
                model = reference
                if isinstance(reference, (str, os.PathLike)):
                    model = _load_causal_lm(reference, **from_pretrained_kwargs)
                if tokenizer is not None:
                    self._check_vocabulary(model, tokenizer, None)
                resolved.append(model)
        return resolved

    @staticmethod
    def _initial_model(doctor: PreTrainedModel, config: DoctorConfig, from_pretrained_kwargs: dict) -> PreTrainedModel:
        """The weights a full-weight doctor started from: its recorded `reference_name_or_path`, loaded and cut to
        the recorded depth (a doctor made of the patient's first layers)."""
        name = config.reference_name_or_path
        try:
            if not name:
                raise OSError("no name recorded")
            reference = _load_causal_lm(name, **from_pretrained_kwargs)
        except OSError as error:
            raise ValueError(
                f"Doctor {doctor.name_or_path!r} was trained against its initial weights ({name!r}), which could not "
                f"be loaded ({error}): pass that model as `references=` (or `references='none'` to mix the doctor in "
                "without one)."
            ) from error
        num_layers = config.reference_num_layers
        if num_layers and num_layers < len(reference.get_decoder().layers):
            from .modeling import truncated_causal_lm

            reference = truncated_causal_lm(reference, num_layers)
        return reference.eval()

    @staticmethod
    def _check_vocabulary(doctor: PreTrainedModel, tokenizer, doctor_tokenizer) -> None:
        name = doctor.name_or_path or type(doctor).__name__
        vocab_size = doctor.config.get_text_config().vocab_size
        if vocab_size < len(tokenizer):
            raise ValueError(
                f"Doctor {name!r} has {vocab_size} vocabulary ids, fewer than the {len(tokenizer)} tokens of the "
                f"patient tokenizer {tokenizer.name_or_path!r}: they cannot share a vocabulary."
            )
        if doctor_tokenizer is not None and doctor_tokenizer.get_vocab() != tokenizer.get_vocab():
            raise ValueError(
                f"Doctor {name!r} was saved with tokenizer {doctor_tokenizer.name_or_path!r} ({len(doctor_tokenizer)} "
                f"tokens), which differs from the patient tokenizer {tokenizer.name_or_path!r} ({len(tokenizer)} "
                "tokens): guidance needs both models to use the same vocabulary."
            )

    def set_betas(self, betas: float | Sequence[float]) -> None:
        """Change the doctors' weights, for instance between two `generate` calls, without reloading them."""
        betas = [float(betas)] * len(self.doctors) if isinstance(betas, numbers.Real) else [float(b) for b in betas]
        if len(betas) != len(self.doctors):
            raise ValueError(f"Got {len(betas)} betas for {len(self.doctors)} doctors.")
        self.betas = betas
        # Doctors with a zero weight are not run; a change of the active set restarts the caches at the next call.

    def set_attention_mask(self, attention_mask: torch.Tensor | None) -> None:
        """Set the attention mask of the prompts of the next `generate` call (`None`: infer it from padding)."""
        self._forward.attention_mask = attention_mask
        self.reset()

    def reset(self) -> None:
        """Drop the cached states; the next call prefills its whole `input_ids`."""
        self._forward.reset()

    def _streams(self) -> list[Stream]:
        """The models to run for the active doctors: each doctor, then its reference when that is a model or base."""
        streams = []
        for doctor, reference, beta in zip(self.doctors, self.references, self.betas):
            if beta == 0:
                continue
            streams.append(Stream(doctor))
            if reference == BASE:
                streams.append(Stream(doctor, base_only=True))
            elif isinstance(reference, torch.nn.Module):
                streams.append(Stream(reference))
        return streams

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                The sequences so far, prompt included (`batch_size` counts every beam and returned sequence).
            scores (`torch.Tensor` of shape `(batch_size, vocab_size)`):
                The patient's logits (greedy, sampling) or log-probabilities (beam search).

        Return:
            `torch.Tensor` of shape `(batch_size, vocab_size)`: the mixed scores, in the dtype of `scores`. Columns
            beyond a doctor's (or reference's) vocabulary are `-inf` (unless every beta is 0).
        """
        if self.alpha == 1 and not self.normalize and all(beta == 0 for beta in self.betas):
            return scores
        patient_logprobs = log_softmax_keeping_masked(scores)
        mixed = self.alpha * patient_logprobs if self.alpha != 0 else torch.zeros_like(scores)
        uses_patient = self.alpha != 0 or any(
            beta != 0 and reference == PATIENT for beta, reference in zip(self.betas, self.references)
        )
        impossible = torch.isneginf(patient_logprobs) if uses_patient else torch.zeros_like(scores, dtype=torch.bool)
        streams = self._streams()
        logits = iter(self._forward(streams, input_ids.to(scores.device), scores.device) if streams else [])
        vocab_size = scores.shape[-1]
        for beta, reference in zip(self.betas, self.references):
            if beta == 0:
                continue
            term = log_softmax_keeping_masked(next(logits)[:, :vocab_size].float()).to(scores.dtype)
            impossible[:, : term.shape[-1]] |= torch.isneginf(term)
            if reference is not None:
                reference_logprobs = (
                    patient_logprobs
                    if reference == PATIENT
                    else log_softmax_keeping_masked(next(logits)[:, :vocab_size].float()).to(scores.dtype)
                )
                width = min(term.shape[-1], reference_logprobs.shape[-1])
                impossible[:, :width] |= torch.isneginf(reference_logprobs[:, :width])
                term = term[:, :width] - reference_logprobs[:, :width]
            mixed[:, : term.shape[-1]] += beta * term
            impossible[:, term.shape[-1] :] = True
        # Overwrites the +-inf and NaN that weighted -inf entries leave behind (negative weights, inf - inf).
        mixed = mixed.masked_fill(impossible, float("-inf"))
        return log_softmax_keeping_masked(mixed) if self.normalize else mixed
