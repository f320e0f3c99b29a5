"""Generate with several methods on the same prompts and seeds, judge them, and measure quality and diversity."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase, set_seed

from ..utils.files import write_json_atomically
from .judges import Judge, get_judge, judge_scores
from .metrics import bootstrap_interval, distinct_n, paired_outcomes, self_bleu, win_rate


Prompt = str | list[dict[str, Any]]


@dataclass
class Method:
    """A way to answer prompts: `generate(prompts, seed)` returns one text per prompt.

    `family` groups a sweep (e.g. "LLMdoctor" at several betas) and `beta` is its knob, for the plot.
    """

    name: str
    generate: Callable[[list[Prompt], int], list[str]]
    family: str = ""
    beta: float | None = None


@dataclass
class MethodResult:
    """One method's generations on every (seed, prompt), seed-major, with their judge scores and summaries.

    Intervals are 95% percentile bootstraps over prompts (`bootstrap_interval`); diversity is averaged over seeds
    (each seed's texts measured together), so it does not depend on how many seeds ran.
    """

    name: str
    family: str
    beta: float | None
    mean_score: float
    score_interval: tuple[float, float]
    win_rate: float
    win_rate_interval: tuple[float, float]
    distinct_1: float
    distinct_2: float
    distinct_3: float
    self_bleu: float
    mean_words: float
    seconds_per_sample: float
    scores: list[float] = field(repr=False)
    texts: list[str] = field(repr=False)
    prompt_ids: list[int] = field(repr=False)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("scores", "texts", "prompt_ids")}


def chat_prompt(prompt: Prompt) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def patient_generate_fn(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int = 8,
    processor_factory: Callable[[], Any] | None = None,
    **generate_kwargs,
) -> Callable[[list[Prompt], int], list[str]]:
    """A `Method.generate` that runs `model.generate` in left-padded batches through the chat template.

    `processor_factory` builds a logits processor (e.g. a `DoctorLogitsProcessor`) once; it is handed each batch's
    attention mask through `set_attention_mask`, and its conversations through `set_conversations` (what a doctor
    of another tokenizer reads), when it has them.
    """
    processor = processor_factory() if processor_factory is not None else None

    def generate(prompts: list[Prompt], seed: int) -> list[str]:
        set_seed(seed)
        texts = [
            tokenizer.apply_chat_template(chat_prompt(p), tokenize=False, add_generation_prompt=True) for p in prompts
        ]
        outputs: list[str] = []
        padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
        try:
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(
                    texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
                )
                batch = batch.to(model.device)
                processors = LogitsProcessorList()
                if processor is not None:
                    if hasattr(processor, "set_attention_mask"):
                        processor.set_attention_mask(batch["attention_mask"])
                    if hasattr(processor, "set_conversations"):
                        processor.set_conversations([chat_prompt(p) for p in prompts[start : start + batch_size]])
                    processors.append(processor)
                with torch.inference_mode():
                    generated = model.generate(
                        **batch, logits_processor=processors, pad_token_id=tokenizer.pad_token_id, **generate_kwargs
                    )
                new_tokens = generated[:, batch["input_ids"].shape[1] :]
                outputs += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        finally:
            tokenizer.padding_side = padding_side
        return [text.strip() for text in outputs]

    return generate


def best_of_n_generate_fn(sample_fn: Callable[[list[Prompt], int], list[str]], judge: Judge, n: int = 4):
    """A `Method.generate` that draws `n` samples per prompt (seeds seed..seed+n-1) and keeps the judge's favourite."""

    def generate(prompts: list[Prompt], seed: int) -> list[str]:
        candidates = [sample_fn(prompts, seed + k) for k in range(n)]
        scores = [judge_scores(judge, texts, prompts) for texts in candidates]
        return [candidates[max(range(n), key=lambda k: scores[k][i])][i] for i in range(len(prompts))]

    return generate


def generations(
    method: Method, prompts: list[Prompt], seeds: Sequence[int], cache_dir: str | os.PathLike | None = None
) -> tuple[list[list[str]], float]:
    """`method`'s texts per seed on `prompts`, and the seconds they took. With `cache_dir`, they are written to
    `<cache_dir>/<method name>.json` as soon as they exist and read from there when that file holds the same prompts
    and seeds (an interrupted evaluation resumes where it stopped)."""
    path = Path(cache_dir) / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', method.name)}.json" if cache_dir else None
    key = {"name": method.name, "prompts": prompts, "seeds": list(seeds)}
    if path is not None and path.is_file():
        cached = json.loads(path.read_text())
        if cached["key"] == key:
            return cached["texts_by_seed"], cached["seconds"]
    start = time.perf_counter()
    texts_by_seed = [method.generate(prompts, seed) for seed in seeds]
    seconds = time.perf_counter() - start
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(path, {"key": key, "texts_by_seed": texts_by_seed, "seconds": seconds})
    return texts_by_seed, seconds


def evaluate_methods(
    methods: Sequence[Method],
    prompts: list[Prompt],
    judge: str | Judge,
    baseline: str,
    seeds: Sequence[int] = (0,),
    cache_dir: str | os.PathLike | None = None,
) -> list[MethodResult]:
    """Run every method on the same prompts and seeds; score with the judge; win rates are against `baseline`,
    sample by sample (same prompt, same seed). With `cache_dir`, each method's texts are kept there as soon as they
    exist and reused by a later call with the same prompts and seeds (`generations`)."""
    judge = get_judge(judge)
    runs = {}
    for method in methods:
        texts_by_seed, seconds = generations(method, prompts, seeds, cache_dir)
        texts = [text for seed_texts in texts_by_seed for text in seed_texts]
        scores = judge_scores(judge, texts, [prompt for _ in seeds for prompt in prompts])
        runs[method.name] = (method, texts_by_seed, texts, scores, seconds)
    if baseline not in runs:
        raise ValueError(f"The baseline method {baseline!r} is not among {list(runs)}.")
    baseline_scores = runs[baseline][3]
    prompt_ids = [i for _ in seeds for i in range(len(prompts))]

    def per_seed(metric, texts_by_seed):
        return sum(metric(seed_texts) for seed_texts in texts_by_seed) / len(texts_by_seed)

    return [
        MethodResult(
            name=method.name,
            family=method.family,
            beta=method.beta,
            mean_score=sum(scores) / len(scores),
            score_interval=bootstrap_interval(scores, prompt_ids),
            win_rate=win_rate(scores, baseline_scores),
            win_rate_interval=bootstrap_interval(paired_outcomes(scores, baseline_scores), prompt_ids),
            distinct_1=per_seed(lambda t: distinct_n(t, 1), texts_by_seed),
            distinct_2=per_seed(lambda t: distinct_n(t, 2), texts_by_seed),
            distinct_3=per_seed(lambda t: distinct_n(t, 3), texts_by_seed),
            self_bleu=per_seed(self_bleu, texts_by_seed),
            mean_words=sum(len(text.split()) for text in texts) / len(texts),
            seconds_per_sample=seconds / len(texts),
            scores=scores,
            texts=texts,
            prompt_ids=prompt_ids,
        )
        for method, texts_by_seed, texts, scores, seconds in runs.values()
    ]


def head_to_head(result: MethodResult, opponent: MethodResult) -> tuple[float, float, float]:
    """Win rate of `result` against `opponent` on the same (seed, prompt) samples, ties counting one half, with its
    95% bootstrap interval over prompts: (win rate, low, high)."""
    outcomes = paired_outcomes(result.scores, opponent.scores)
    return (sum(outcomes) / len(outcomes), *bootstrap_interval(outcomes, result.prompt_ids))
