"""Decoding-time guidance of a frozen patient LM by one or more doctor LMs (LLMdoctor / TFPO, stage 3)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from transformers import CompileConfig, LogitsProcessor

from ..doctor.config import DoctorConfig
from ..utils.adapters import mixed_batch_adapter, row_maskable
from ..utils.hub import check_name_or_path, hub_kwargs_of, resolve_local_path
from .cached_forward import IncrementalForward, Stream
from .loading import (
    BASE,
    PATIENT,
    check_causal_lm,
    check_tokenizer,
    check_vocabulary,
    doctor_weights,
    load_causal_lm,
    recorded_weights,
    resolve_references,
    saved_tokenizer,
)
from .mixing import DoctorTerm, checked_log_softmax, guided_scores
from .text_doctors import (
    TEXT_TOP_K,
    TextRows,
    check_text_doctor,
    only_candidates,
    per_doctor,
    scattered,
    text_doctors,
    top_k_candidates,
)


if TYPE_CHECKING:
    from transformers import PreTrainedModel


def compile_config_of(compile_doctors: bool | CompileConfig) -> CompileConfig | None:
    """The `CompileConfig` that `compile_doctors` asks for (`None`: eager decoding)."""
    if isinstance(compile_doctors, CompileConfig):
        return compile_doctors
    if isinstance(compile_doctors, bool):
        return CompileConfig() if compile_doctors else None
    raise ValueError(
        f"`compile_doctors` must be True, False or a transformers `CompileConfig`, got {compile_doctors!r}."
    )


DOCTOR_KINDS = "a causal LM, a `DoctorModel`, or a local path or Hub id of a saved doctor (or a list of them)"


class DoctorLogitsProcessor(LogitsProcessor):
    r"""
    [`LogitsProcessor`] that steers a frozen *patient* model with one or more *doctor* causal LMs (LLMdoctor, stage
    3). The patient's next-token scores become

        alpha * log p_patient(y | s_t) + sum_i beta_i * [log p_doctor_i(y | s_t) - log p_ref_i(y | s_t)]

    over the vocabulary the models share. A doctor with a reference (*ratio guidance*, the default of a TFPO doctor)
    adds beta_i times its learned token reward, its log-ratio to the policy it was trained against; a doctor without
    one (`references="none"`, the *mix*: the paper's literal decoding, and GenARM's) adds beta_i * log p_doctor_i.
    Weights and references not given are read from each doctor's `doctor_config.json`, where [`TFPOTrainer`]
    records them; a doctor that records none is mixed in with `beta = 0.5`, `alpha = 1`.

    Each doctor (and each reference that is a model) keeps its own KV cache: the prompts are prefilled once, then
    every call feeds one new token per row. A LoRA doctor and its base (`references="initial"`) share one forward and
    one cache: the adapter's rows and the base's rows in one batch (PEFT's per-row `adapter_names`), so the reference
    costs extra rows, not a second pass over the weights. Greedy search, sampling, beam search,
    `num_return_sequences`, left-padded batches and `pipeline("text-generation")` are supported; a call that does not
    continue the previous one starts over, so one processor serves many `generate` calls. How the caches follow
    `generate` (beams, batch expansion, padding, references, `-inf`) is described in docs/method.md, "The processor's
    mechanics".

    Args:
        doctors (`PreTrainedModel`, `DoctorModel`, `str`, or a `list` of them):
            The doctor(s): causal LMs, `DoctorModel`s (their LM and `doctor_config` are used), or local paths / Hub
            ids of saved doctors, loaded with `AutoModelForCausalLM.from_pretrained` (LoRA adapter folders with
            `AutoPeftModelForCausalLM.from_pretrained`).
        betas (`float` or `list[float]`, *optional*):
            Weight of each doctor's term; one number applies to every doctor. Must be finite. Defaults to each
            doctor's recorded `beta` (0.5 when it records none). Change it between calls with
            [`~DoctorLogitsProcessor.set_betas`].
        alpha (`float`, *optional*):
            Weight of the patient's log-probabilities. Must be finite. Defaults to the doctors' recorded `alpha` when
            they agree, else `1.0`.
        tokenizer (`PreTrainedTokenizerBase`, *optional*):
            The patient's tokenizer. When given, a doctor with fewer vocabulary ids than `len(tokenizer)`, or saved
            with a different tokenizer, raises a `ValueError` here; it also provides the default `pad_token_id`, and
            bounds the guided vocabulary to its ids: the rows of an LM head beyond `len(tokenizer)` (the padding of
            models of one family with heads of different widths, such as Qwen2.5-7B's 152,064 rows and -3B's 151,936
            for 151,665 tokens) are left out of every log-softmax and get `-inf`. Without it, the padding rows the
            patient and a doctor both have are guided as if they were tokens.
        attention_mask (`torch.LongTensor` of shape `(batch_size, prompt_length)`, *optional*):
            The attention mask of the prompts of the next `generate` call, and of that call only (call
            [`~DoctorLogitsProcessor.set_attention_mask`] before each later call). Pass it when a prompt may start
            with the pad token; without it, the leading run of `pad_token_id` in each row is taken as padding.
        normalize (`bool`, *optional*, defaults to `False`):
            Whether to subtract the log-sum-exp, so the mixed scores are log-probabilities. Greedy and beam search
            only compare tokens, and sampling applies a softmax after the processors, so it is rarely needed.
        pad_token_id (`int`, *optional*):
            Token treated as left padding when no attention mask is given. Defaults to the tokenizer's, else the
            first doctor's generation config or config.
        references (`str`, `PreTrainedModel`, or a `list` of them, *optional*):
            The reference of each doctor (one value applies to every doctor):

            - `"patient"`: the patient's own log-probabilities, at no extra cost. Right for a doctor that started as
              a copy of this patient (a LoRA copy, `DoctorModel.from_patient`): ratio guidance is then the mix with
              `alpha - beta` on the patient.
            - `"initial"`: the weights the doctor started from, whatever the patient: a LoRA doctor's base with its
              adapter disabled (also accepted as `"base"`), or the model a full-weight doctor's `doctor_config.json`
              names. Use it to guide a patient other than the one the doctor copied (weak-to-strong).
            - a model, or a path / Hub id: any causal LM sharing the vocabulary.
            - `"none"`: no reference (the mix).

            Defaults to what each doctor records.
        compile_doctors (`bool` or `CompileConfig`, *optional*, defaults to `False`):
            Decode the doctors and references at fixed shapes through their compiled call, for a GPU, where an eager
            step costs its kernel launches whatever the model's size: static KV caches (in buckets of 256 tokens),
            a LoRA doctor's rows and its base's rows in one forward, no host-side branch inside a step, so
            `torch.compile(mode="reduce-overhead")` captures one CUDA graph per bucket and replays it. `True` uses
            transformers' default `CompileConfig` (what `generate` uses with `cache_implementation="static"`); a
            `CompileConfig` sets the backend, mode and options. The tokens are those of the eager path (same
            arithmetic, compared by the tests). Off by default: compiling takes seconds to minutes per model, and
            CUDA graphs, which remove the per-step launch cost, exist on GPUs only.
        doctor_tokenizers (`PreTrainedTokenizerBase` or a `list` of them and `None`, *optional*):
            The tokenizer of each doctor whose tokenizer is not the patient's (`None`: the patient's; one tokenizer
            applies to every doctor). Such a doctor is read as *text*: its term is beta times its (and its
            reference's) log-probability of each candidate token's bytes, computed in its own tokens and chat
            template (docs/guides/cross_tokenizer.md). A doctor loaded from a path whose saved tokenizer differs
            from `tokenizer` is read this way with that tokenizer. Needs `tokenizer` and `conversations`.
        conversations (`list`, *optional*):
            One per prompt row of the next `generate` calls: a list of messages (read through each text-read
            doctor's own chat template, with its generation prompt) or a plain string. Kept until
            [`~DoctorLogitsProcessor.set_conversations`] replaces them; a call with other prompts than those they
            were first used with is refused.
        guided_top_k (`int`, *optional*):
            Guide only each row's `guided_top_k` most probable patient tokens; the other ids get `-inf`. Defaults to
            10 when a doctor is read as text (each candidate costs its text probability), else to every id.
        text_probability (`str`, *optional*, defaults to `"aligned"`):
            How a text-read doctor scores a candidate's text: `"aligned"` (along one token path per row: a candidate
            that is one doctor token gets that token's probability; with one tokenizer, exactly the token-level
            guidance) or `"marginal"` (over every tokenization of the text, within `text_beam_size` paths).
        text_beam_size (`int`, *optional*, defaults to 4):
            Token paths kept by a text-read doctor's marginal (`None`: all, exact).
        from_pretrained_kwargs (`dict[str, Any]`, *optional*):
            Passed to `from_pretrained` for doctors and references given as paths or Hub ids (`dtype`, `revision`,
            `token`, ...). Checkpoints holding pickled weights only (`pytorch_model.bin`, `adapter_model.bin`,
            `*.pt`) are refused unless `use_safetensors=False` is given; `trust_remote_code` is only passed on when
            given here.

    Raises:
        `ValueError`: at construction, for an empty `doctors`, a doctor or reference that is neither a model nor a
        path or Hub id, a checkpoint holding pickled weights only, a vocabulary or tokenizer mismatch (with
        `tokenizer`), weights that are not finite real numbers, or a number of betas or references that does not
        match the doctors; at a call, for NaN or +inf logits of a doctor or reference, prompt ids outside a doctor's
        vocabulary, or an attention mask left over from an earlier `generate` call.
        `FileNotFoundError`: at construction, for a doctor or reference given as a local path that does not exist
        (checked before any Hub call).
        `RuntimeError`: at a call that continues a generation interrupted by another thread's (see below).

    The mixed scores are not renormalised (unless `normalize=True`); with every beta 0 and alpha 1 they are the
    patient's scores, unchanged. `generate`'s warpers (`temperature`, `top_k`, `top_p`) act *after* this processor, on
    the mixed scores; the processors `generate` builds itself (`min_new_tokens`, `repetition_penalty`, bad words)
    act *before* it, and their `-inf` masks survive as long as the patient is used (`alpha != 0` or a `"patient"`
    reference). With beam search the mixed scores are the beams' per-token log-probabilities. Doctors run under
    `torch.inference_mode` on the device of the scores. Continuous batching is not supported.

    One instance per concurrent generation: a processor holds the caches of one generation at a time. A generation
    started on it in another thread while one is under way takes it over, and the interrupted one raises a
    `RuntimeError` at its next step instead of reading caches that are no longer its own. Generations one after the
    other share one processor, from any threads.

    Examples:

    ```python
    >>> from transformers import LogitsProcessorList
    >>> from tfpo_hf import DoctorLogitsProcessor
    >>> from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

    >>> # tiny random models, so the example runs anywhere; a saved doctor: DoctorLogitsProcessor("my-doctor", ...)
    >>> tokenizer = tiny_tokenizer()
    >>> tokenizer.padding_side = "left"
    >>> patient, doctor_lm = tiny_causal_lm(seed=0), tiny_causal_lm(seed=1)
    >>> inputs = tokenizer(["Tell me about cats.", "Hi!"], padding=True, return_tensors="pt")
    >>> doctor = DoctorLogitsProcessor(doctor_lm, betas=2.0, tokenizer=tokenizer, attention_mask=inputs.attention_mask)
    >>> doctor.betas, doctor.alpha, doctor.references
    ([2.0], 1.0, [None])
    >>> out = patient.generate(
    ...     **inputs, logits_processor=LogitsProcessorList([doctor]), max_new_tokens=4, do_sample=False,
    ...     pad_token_id=tokenizer.pad_token_id,
    ... )
    >>> out.shape  # (batch_size, prompt_length + max_new_tokens)
    torch.Size([2, 23])

    >>> # Stronger guidance for the next call, same doctor weights; each call needs its prompts' mask set again
    >>> doctor.set_betas(4.0)
    >>> doctor.set_attention_mask(inputs.attention_mask)
    >>> patient.generate(**inputs, logits_processor=LogitsProcessorList([doctor]), max_new_tokens=4,
    ...                  do_sample=False, pad_token_id=tokenizer.pad_token_id).shape
    torch.Size([2, 23])

    >>> # Called directly: (input_ids, scores) -> mixed scores of shape (batch_size, vocab_size)
    >>> scores = patient(**inputs).logits[:, -1]
    >>> doctor.set_attention_mask(inputs.attention_mask)
    >>> doctor(inputs.input_ids, scores).shape
    torch.Size([2, 259])
    >>> doctor.set_betas(0.0)  # every beta 0 and alpha 1: the patient's scores, untouched
    >>> doctor(inputs.input_ids, scores) is scores
    True

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
        compile_doctors: bool | CompileConfig = False,
        doctor_tokenizers=None,
        conversations: Sequence | None = None,
        guided_top_k: int | None = None,
        text_probability: str = "aligned",
        text_beam_size: int | None = 4,
        **from_pretrained_kwargs,
    ):
        check_tokenizer(tokenizer)
        sources = list(doctors) if isinstance(doctors, (list, tuple)) else [doctors]
        if not sources:
            raise ValueError("`doctors` is empty: give at least one doctor model, path or Hub id.")
        self.doctors: list[PreTrainedModel] = []
        recorded: list[DoctorConfig] = []
        given_tokenizers = per_doctor("doctor_tokenizers", doctor_tokenizers, len(sources))
        own_tokenizers: list = []  # per doctor: its tokenizer when it differs from the patient's (read as text)
        for index, source in enumerate(sources):
            argument = f"doctors[{index}]" if isinstance(doctors, (list, tuple)) else "doctors"
            if isinstance(source, (str, os.PathLike)):
                check_name_or_path(argument, source)  # an empty name: not "path  does not exist"
                source = resolve_local_path(source)
                doctor = load_causal_lm(source, **from_pretrained_kwargs)
                recorded.append(DoctorConfig.from_pretrained(source, **hub_kwargs_of(from_pretrained_kwargs)))
                hub_lookup = True
            else:
                doctor = getattr(source, "pretrained_model", source)
                check_causal_lm(argument, doctor, DOCTOR_KINDS)
                recorded.append(DoctorConfig.from_dict(getattr(source, "doctor_config", None)))
                source, hub_lookup = str(getattr(doctor, "name_or_path", "")), False
            doctor_tokenizer = given_tokenizers[index]
            if doctor_tokenizer is None and tokenizer is not None:
                doctor_tokenizer = saved_tokenizer(source, hub_lookup, from_pretrained_kwargs)
                if doctor_tokenizer is not None and doctor_tokenizer.get_vocab() == tokenizer.get_vocab():
                    doctor_tokenizer = None
            if doctor_tokenizer is not None:
                check_text_doctor(argument, doctor, doctor_tokenizer, tokenizer)
            elif tokenizer is not None:
                check_vocabulary(doctor, tokenizer, None)
            own_tokenizers.append(doctor_tokenizer)
            self.doctors.append(doctor)
        self.references = resolve_references(
            self.doctors,
            references,
            recorded,
            [own or tokenizer for own in own_tokenizers],
            from_pretrained_kwargs,
        )
        compile_config = compile_config_of(compile_doctors)
        self._text_doctors = text_doctors(
            self.doctors, self.references, own_tokenizers, tokenizer, compile_config, text_probability, text_beam_size
        )
        self.guided_top_k = guided_top_k if guided_top_k is not None or not any(self._text_doctors) else TEXT_TOP_K
        if self.guided_top_k is not None and self.guided_top_k < 1:
            raise ValueError(f"`guided_top_k` must be a positive number of candidates or None, got {guided_top_k}.")
        self._text_rows = TextRows(conversations)
        # A LoRA doctor and its base (the "initial" reference) share one forward: adapter rows, then base rows (at
        # fixed shapes only for plain LoRA layers: otherwise the base runs as a forward of its own).
        self._base_in_batch = [
            reference == BASE
            and mixed_batch_adapter(doctor) is not None
            and (compile_config is None or row_maskable(doctor))
            for doctor, reference in zip(self.doctors, self.references)
        ]
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
        self.vocab_size = len(tokenizer) if tokenizer is not None else None  # ids beyond it: LM-head padding
        self._forward = IncrementalForward(pad_token_id, attention_mask, compile_config)
        self.betas: list[float] = [0.0] * len(self.doctors)
        self.set_betas(betas)

    def set_betas(self, betas: float | Sequence[float]) -> None:
        """Change the doctors' weights, for instance between two `generate` calls, without reloading them."""
        self.betas = doctor_weights(betas, len(self.doctors))
        # Doctors with a zero weight are not run; a change of the active set restarts the caches at the next call.

    def set_conversations(self, conversations: Sequence | None) -> None:
        """Set the conversations the doctors of another tokenizer read the next `generate` calls' prompts from: one
        per prompt row (a list of messages, read through each such doctor's own chat template, or a plain string)."""
        self._text_rows = TextRows(conversations)

    def set_attention_mask(self, attention_mask: torch.Tensor | None) -> None:
        """Set the attention mask of the prompts of the next `generate` call (`None`: infer it from padding)."""
        self._forward.attention_mask = attention_mask
        self.reset()

    def reset(self) -> None:
        """Drop the cached states; the next call prefills its whole `input_ids`."""
        self._forward.reset()
        self._text_rows.reset()

    def doctor_streams(self, index: int) -> list[Stream]:
        """The models to run for doctor `index`: the doctor (with its base's rows when they share its forward), then
        its reference when that is a model or a base that cannot share the doctor's forward."""
        doctor, reference, base_in_batch = self.doctors[index], self.references[index], self._base_in_batch[index]
        streams = [Stream(doctor, with_base=base_in_batch)]
        if reference == BASE and not base_in_batch:
            streams.append(Stream(doctor, base_only=True))
        elif isinstance(reference, torch.nn.Module):
            streams.append(Stream(reference))
        return streams

    def _streams(self) -> list[Stream]:
        """The models to run for the active doctors (those with a non-zero beta), in order."""
        return [
            stream
            for index, beta in enumerate(self.betas)
            if beta != 0 and self._text_doctors[index] is None
            for stream in self.doctor_streams(index)
        ]

    def _logps(
        self, logits: torch.Tensor, vocab_size: int, index: int, input_ids: torch.LongTensor, role: str = "doctor"
    ) -> torch.Tensor:
        name = getattr(self.doctors[index], "name_or_path", "") or f"doctor {index}"
        return checked_log_softmax(logits, vocab_size, f"the {role} of {name!r}", input_ids.shape[-1])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                The sequences so far, prompt included (`batch_size` counts every beam and returned sequence).
            scores (`torch.Tensor` of shape `(batch_size, vocab_size)`):
                The patient's logits (greedy, sampling) or log-probabilities (beam search).

        Return:
            `torch.Tensor` of shape `(batch_size, vocab_size)`: the mixed scores, in the dtype of `scores`. Columns
            beyond a doctor's (or reference's) vocabulary are `-inf` (unless every beta is 0), and so are the ids at
            or beyond `len(tokenizer)` (unless `scores` are returned as they are). Each log-softmax runs over the
            shared ids: the patient's over its first `min(len(tokenizer), scores.shape[-1])` columns (all of them
            without `tokenizer`), a doctor's or reference's over as many, or over its whole width when narrower.
        """
        if self.alpha == 1 and not self.normalize and all(beta == 0 for beta in self.betas):
            return scores
        vocab_size = scores.shape[-1] if self.vocab_size is None else min(self.vocab_size, scores.shape[-1])
        streams = self._streams()
        logits = iter(self._forward(streams, input_ids.to(scores.device), scores.device) if streams else [])
        candidates = None if self.guided_top_k is None else top_k_candidates(scores, vocab_size, self.guided_top_k)
        text_doctors = [doctor for doctor, beta in zip(self._text_doctors, self.betas) if doctor is not None and beta]
        row_keys = self._text_rows(input_ids, text_doctors) if text_doctors else []
        terms = []
        for index, (beta, reference) in enumerate(zip(self.betas, self.references)):
            if beta == 0:
                continue
            if self._text_doctors[index] is not None:
                text_logps = self._text_doctors[index](row_keys, candidates.cpu())
                doctor_logps, *reference_logps = (scattered(values, candidates, scores) for values in text_logps)
                terms.append(DoctorTerm(beta, doctor_logps, reference_logps[0] if reference_logps else None))
                continue
            doctor_logps = self._logps(next(logits), vocab_size, index, input_ids).to(scores.dtype)
            if reference is None or (isinstance(reference, str) and reference == PATIENT):
                terms.append(DoctorTerm(beta, doctor_logps, reference))
            else:
                reference_logps = self._logps(next(logits), vocab_size, index, input_ids, "reference")
                terms.append(DoctorTerm(beta, doctor_logps, reference_logps.to(scores.dtype)))
        if candidates is None:
            return guided_scores(scores, terms, self.alpha, vocab_size, self.normalize)
        return only_candidates(guided_scores(scores, terms, self.alpha, vocab_size), candidates, self.normalize)
