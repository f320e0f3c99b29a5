"""Decoding-time guidance of a frozen patient LM by one or more doctor LMs (LLMdoctor / TFPO, stage 3)."""

from __future__ import annotations

import inspect
import numbers
import os
from collections.abc import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, LogitsProcessor, PreTrainedModel

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_TOKENIZER_KWARGS = ("cache_dir", "local_files_only", "revision", "subfolder", "token", "trust_remote_code")


def _log_softmax(x: torch.Tensor) -> torch.Tensor:
    """`log_softmax` over the last dim that keeps `-inf` entries at `-inf`, also on rows that are `-inf` everywhere
    (where the plain `log_softmax` gives NaN)."""
    return torch.log_softmax(x, dim=-1).masked_fill(torch.isneginf(x), float("-inf"))


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
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except OSError:
        return None


class DoctorLogitsProcessor(LogitsProcessor):
    r"""
    [`LogitsProcessor`] that steers a frozen *patient* model with one or more *doctor* causal LMs (LLMdoctor): the
    next-token scores become

        log p(y | s_t) = alpha * log_softmax(patient scores) + sum_i beta_i * log_softmax(doctor_i logits)

    computed over the vocabulary the models share. The result is not renormalised unless `normalize=True`: greedy and
    beam search only compare tokens, and sampling applies a softmax after the processors anyway. The weights are used
    as given: GenARM divides its mix by `1 + beta`, which here is `alpha=1 / (1 + b)`, `betas=b / (1 + b)` (or, for
    sampling, `temperature=1 + b`).

    With `do_sample=True`, `generate` applies its warpers *after* this processor, to the mixed scores:
    `temperature` divides them, then `top_k` / `top_p` keep the most likely tokens of the mixed distribution. With
    beam search the mixed scores are the beam's per-token log-probabilities. Processors that `generate` builds itself
    (`min_new_tokens`, `repetition_penalty`, bad words...) run *before* this one and reach it through the patient
    scores: their `-inf` masks survive the mix as long as `alpha != 0`. A weight of 0 removes its model from the mix
    exactly (a `-inf` of that model included); a `-inf` from a model with a non-zero weight makes the token impossible.

    Each doctor keeps its own [`DynamicCache`]: the prompt is prefilled once (`logits_to_keep=1`), then every call
    feeds each doctor exactly one new token per row. The processor only sees `input_ids`, so it infers the rest:

    - **Batch expansion.** Rows that `generate` duplicates (`num_return_sequences`, beams) are simply prefilled as
      they come.
    - **Beam search.** Each row's parent is a previous call's row whose tokens equal `input_ids[:, :-1]` (from the
      same prompt when an attention mask is given); the doctors' caches are reordered with `batch_select_indices`,
      and their attention masks likewise.
    - **Left padding.** The attention mask given to the constructor or to [`~DoctorLogitsProcessor.set_attention_mask`]
      is used (its rows are repeated to match an expanded batch); without one, the leading run of `pad_token_id` of
      each row is padding. Pass the mask when a prompt may itself start with the pad token (e.g. a BOS equal to it).
      Doctor position ids are `cumsum(attention_mask) - 1`, as in `generate`.
    - **New generation.** A call whose batch size differs, whose length is not the previous one plus one, or whose
      rows do not extend the previous rows starts over with a fresh prefill, so one processor serves many `generate`
      calls. Rows that finished early keep receiving the tokens `generate` appends (padding), like the patient.

    Doctors run under `torch.inference_mode` on the device of the scores (they are moved there on the first call,
    unless dispatched with a device map) and their log-probabilities are cast to the scores' dtype.

    Args:
        doctors (`PreTrainedModel`, `str`, or a list of them):
            Causal LM(s), local path(s) or Hub id(s) of doctor checkpoints (loaded with
            `AutoModelForCausalLM.from_pretrained(..., **from_pretrained_kwargs)`). An object with a
            `pretrained_model` attribute (a `DoctorModel`) contributes that causal LM.
        betas (`float` or `list[float]`, *optional*, defaults to 0.5):
            Weight of each doctor's log-probabilities; one number is used for every doctor.
        alpha (`float`, *optional*, defaults to 1.0):
            Weight of the patient's log-probabilities.
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
    >>> doctor = DoctorLogitsProcessor("path/to/doctor", betas=0.5, tokenizer=tokenizer,
    ...                                attention_mask=inputs.attention_mask)
    >>> out = patient.generate(**inputs, logits_processor=LogitsProcessorList([doctor]), max_new_tokens=32)
    >>> doctor.set_betas(1.0)  # stronger guidance for the next call, same doctor weights
    ```
    """

    supports_continuous_batching = False

    def __init__(
        self,
        doctors,
        betas: float | Sequence[float] = 0.5,
        alpha: float = 1.0,
        tokenizer=None,
        attention_mask: torch.Tensor | None = None,
        normalize: bool = False,
        pad_token_id: int | None = None,
        **from_pretrained_kwargs,
    ):
        sources = list(doctors) if isinstance(doctors, (list, tuple)) else [doctors]
        if not sources:
            raise ValueError("`doctors` is empty: give at least one doctor model, path or Hub id.")
        self.doctors: list[PreTrainedModel] = []
        for source in sources:
            if isinstance(source, (str, os.PathLike)):
                doctor = AutoModelForCausalLM.from_pretrained(source, **from_pretrained_kwargs)
                source, hub_lookup = str(source), True
            else:
                doctor = getattr(source, "pretrained_model", source)
                source, hub_lookup = str(getattr(doctor, "name_or_path", "")), False
            if tokenizer is not None:
                self._check_vocabulary(doctor, tokenizer, _saved_tokenizer(source, hub_lookup, from_pretrained_kwargs))
            self.doctors.append(doctor)
        # transformers renamed `past_key_values` to `cache` during 5.x; wrappers (PEFT) take either through **kwargs.
        self._cache_kwargs = [
            "past_key_values" if "past_key_values" in inspect.signature(type(doctor).forward).parameters else "cache"
            for doctor in self.doctors
        ]
        self.alpha = float(alpha)
        self.normalize = normalize
        if pad_token_id is None and tokenizer is not None:
            pad_token_id = tokenizer.pad_token_id
        if pad_token_id is None:
            generation_config = getattr(self.doctors[0], "generation_config", None)
            pad_token_id = getattr(generation_config, "pad_token_id", None)
        if pad_token_id is None:
            pad_token_id = getattr(self.doctors[0].config.get_text_config(), "pad_token_id", None)
        self.pad_token_id = pad_token_id
        self.betas: list[float] = []
        self.attention_mask = attention_mask
        self.set_betas(betas)
        self.reset()

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
        active_changed = [b != 0 for b in betas] != [b != 0 for b in self.betas]
        self.betas = betas
        if active_changed:
            # Doctors with a zero weight are not run: their caches would be stale, so start over at the next call.
            self.reset()

    def set_attention_mask(self, attention_mask: torch.Tensor | None) -> None:
        """Set the attention mask of the prompts of the next `generate` call (`None`: infer it from padding)."""
        self.attention_mask = attention_mask
        self.reset()

    def reset(self) -> None:
        """Drop the doctors' caches; the next call prefills its whole `input_ids`."""
        self._input_ids: torch.LongTensor | None = None  # (rows, length) seen at the previous call
        self._doctor_mask: torch.LongTensor | None = None  # (rows, length) attention mask of those tokens
        self._group_size = 1  # rows that `generate` made from one prompt (beams, returned sequences)
        self._caches: list[DynamicCache] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                The sequences so far, prompt included (`batch_size` counts every beam and returned sequence).
            scores (`torch.Tensor` of shape `(batch_size, vocab_size)`):
                The patient's logits (greedy, sampling) or log-probabilities (beam search).

        Return:
            `torch.Tensor` of shape `(batch_size, vocab_size)`: the mixed scores, in the dtype of `scores`. Columns
            beyond a doctor's vocabulary are `-inf` (unless every beta is 0).
        """
        vocab_size = scores.shape[-1]
        terms = [(self.alpha, _log_softmax(scores))] if self.alpha != 0 else []
        if any(beta != 0 for beta in self.betas):
            doctor_logits = self._doctor_logits(input_ids.to(scores.device), scores.device)
            betas = [beta for beta in self.betas if beta != 0]
            for beta, logits in zip(betas, doctor_logits):
                terms.append((beta, _log_softmax(logits[:, :vocab_size].float()).to(scores.dtype)))

        mixed = torch.zeros_like(scores)
        impossible = torch.zeros_like(scores, dtype=torch.bool)
        for weight, logprobs in terms:
            width = logprobs.shape[-1]
            mixed[:, :width] += weight * logprobs
            impossible[:, :width] |= torch.isneginf(logprobs)
            impossible[:, width:] = True
        # Overwrites the +-inf and NaN that weighted -inf entries leave behind (negative weights, inf - inf).
        mixed = mixed.masked_fill(impossible, float("-inf"))
        return _log_softmax(mixed) if self.normalize else mixed

    def _doctor_logits(self, input_ids: torch.LongTensor, device: torch.device) -> list[torch.Tensor]:
        """Feed the active doctors what is new in `input_ids` and return their next-token logits, each of shape
        `(batch_size, doctor_vocab_size)`."""
        doctors = [(d, key) for d, key, beta in zip(self.doctors, self._cache_kwargs, self.betas) if beta != 0]
        for doctor, _ in doctors:  # outside inference mode, so that moved parameters stay trainable tensors
            if doctor.device != device and getattr(doctor, "hf_device_map", None) is None:
                doctor.to(device)
        with torch.inference_mode():
            parents = self._parents(input_ids)
            if parents is None:
                mask = self._prompt_attention_mask(input_ids)
                position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
                new_tokens = input_ids
                self._caches = [DynamicCache(config=doctor.config) for doctor, _ in doctors]
            else:
                if not torch.equal(parents, torch.arange(len(parents), device=parents.device)):
                    for cache in self._caches:
                        cache.batch_select_indices(parents)
                    self._doctor_mask = self._doctor_mask[parents]
                position_ids = self._doctor_mask.sum(-1, keepdim=True)
                mask = torch.cat([self._doctor_mask, self._doctor_mask.new_ones((len(input_ids), 1))], dim=-1)
                new_tokens = input_ids[:, -1:]
            self._input_ids, self._doctor_mask = input_ids.clone(), mask

            logits = []
            for (doctor, cache_kwarg), cache in zip(doctors, self._caches):
                inputs = {"input_ids": new_tokens, "attention_mask": mask, "position_ids": position_ids}
                inputs = {name: tensor.to(doctor.device) for name, tensor in inputs.items()}
                outputs = doctor(**inputs, **{cache_kwarg: cache}, use_cache=True, logits_to_keep=1)
                logits.append(outputs.logits[:, -1].to(device))
        return [tensor.clone() for tensor in logits]  # ordinary tensors again, for the processors that follow

    def _parents(self, input_ids: torch.LongTensor) -> torch.LongTensor | None:
        """For each row of `input_ids`, the index of the previous call's row that it extends by one token, or `None`
        if `input_ids` does not continue the previous call (a new generation)."""
        previous = self._input_ids
        if previous is None or input_ids.shape != (previous.shape[0], previous.shape[1] + 1):
            return None
        prefix = input_ids[:, :-1]
        if torch.equal(prefix, previous):
            return torch.arange(len(prefix), device=prefix.device)
        # Any earlier row with the same tokens has the same doctor state, except that with a given mask two prompts can
        # share tokens but not padding: then the parent must come from the row's own group (`generate` keeps the rows
        # it makes from one prompt together). Without a mask, padding follows from the tokens.
        same = (prefix[:, None] == previous[None]).all(-1)
        groups = torch.arange(len(prefix), device=prefix.device) // self._group_size
        same &= groups[:, None] == groups[None]
        if not same.any(-1).all():
            return None
        return same.int().argmax(-1)

    def _prompt_attention_mask(self, input_ids: torch.LongTensor) -> torch.LongTensor:
        """Attention mask of shape `(batch_size, prompt_length)` for the prompts in `input_ids`."""
        if self.attention_mask is not None:
            mask = self.attention_mask.to(input_ids.device).long()
            if mask.shape[-1] > input_ids.shape[-1] or len(input_ids) % len(mask):
                raise ValueError(
                    f"The attention mask has shape {tuple(mask.shape)}, which does not fit prompts of shape "
                    f"{tuple(input_ids.shape)}: call `set_attention_mask` with the mask of this `generate` call."
                )
            self._group_size = len(input_ids) // len(mask)
            generated = input_ids.shape[-1] - mask.shape[-1]  # tokens generated before a reset (`set_betas`)
            mask = torch.nn.functional.pad(mask, (0, generated), value=1)
            return mask.repeat_interleave(self._group_size, dim=0)
        self._group_size = len(input_ids)
        if self.pad_token_id is None:
            return torch.ones_like(input_ids)
        return ((input_ids != self.pad_token_id).cumsum(-1) > 0).long()
