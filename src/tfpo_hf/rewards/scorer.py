"""Stage 1: sparse, signed token rewards from the log-likelihood gap between the patient's two faces.

The formula (`token_rewards_from_logps`) turns the two faces' log-probabilities of one completion into its token
rewards (`TokenRewards`); `TokenRewardScorer` runs the patient as both faces over single completions or a whole
preference dataset, and `reward_statistics` counts what a scored dataset holds."""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
import torch
from datasets import Dataset
from datasets.fingerprint import Hasher
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..utils.logps import position_ids_from_mask, selective_log_softmax
from ..utils.validation import _given
from .config import TokenRewardConfig
from .dataset_checks import as_dataset, check_preference_dataset
from .preference_data import (
    as_explicit_example,
    cut_at_early_eos,
    format_completion,
    tokenize_completion,
    tokenize_prompt,
    truncate_pair,
)


def token_rewards_from_logps(
    positive_logps: torch.Tensor, negative_logps: torch.Tensor, sign: float, config: TokenRewardConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Delta, S and r of one completion from its per-token log-probabilities under the two faces.

    Args:
        positive_logps (`torch.Tensor` of shape `(completion_length,)`):
            log p_pos(y_t | x_pos, y_<t), the positive face's log-probability of each completion token.
        negative_logps (`torch.Tensor` of shape `(completion_length,)`):
            log p_neg(y_t | x_neg, y_<t), the same under the negative face.
        sign (`float`):
            +1 for a chosen completion, -1 for a rejected one.
        config ([`TokenRewardConfig`]):
            Gives `theta`, `tau` and `eps`.

    Return:
        `tuple[torch.Tensor, torch.Tensor, torch.Tensor]`, each of shape `(completion_length,)` (float64): delta =
        |lp_pos - lp_neg|, normalized = tanh(delta / ((mean delta + eps) * tau)) in [0, 1), and rewards = sign *
        normalized * 1[normalized > theta].
    """
    delta = (positive_logps.double() - negative_logps.double()).abs()
    if delta.numel() == 0:
        return delta, delta.clone(), delta.clone()
    normalized = torch.tanh(delta / ((delta.mean() + config.eps) * config.tau))
    rewards = torch.where(normalized > config.theta, sign * normalized, torch.zeros_like(normalized))
    return delta, normalized, rewards


@dataclass
class TokenRewards:
    """Per-token rewards of one completion, with the quantities they come from (all lists as long as `token_ids`)."""

    token_ids: list[int]
    tokens: list[str]
    rewards: list[float]
    delta: list[float]
    normalized: list[float]

    @property
    def nonzero_fraction(self) -> float:
        return sum(r != 0 for r in self.rewards) / max(len(self.rewards), 1)


@dataclass
class ScoringStats:
    """Counts reported after scoring a dataset."""

    examples: int = 0
    empty_completions: int = 0
    truncated_examples: int = 0
    completion_tokens: int = 0
    nonzero_rewards: int = 0

    @property
    def nonzero_fraction(self) -> float:
        return self.nonzero_rewards / max(self.completion_tokens, 1)


@torch.no_grad()
def weights_probe(model: nn.Module) -> list[tuple[str, float, float]]:
    """(name, sum, sum of squares) of every parameter: changes when any weight changes, cheap to compute and hash."""
    return [(name, p.float().sum().item(), p.float().square().sum().item()) for name, p in model.named_parameters()]


logger = logging.getLogger(__name__)


@dataclass
class _Sequence:
    prompt_ids: list[int]
    completion_ids: list[int]
    where: str = field(default="")  # names the example in error messages


class TokenRewardScorer:
    r"""
    Stage 1 of LLMdoctor: scores every completion token of preference data with the patient, prompted as a positive
    and a negative *face* (two system prompts). The log-likelihood gap of each token between the two faces becomes a
    sparse, signed token reward

        r_t = sign * S_t * 1[S_t > theta],   S_t = tanh(Delta_t / ((mean_j Delta_j + eps) * tau)),
        Delta_t = |log p_pos(y_t | x, y_<t) - log p_neg(y_t | x, y_<t)|

    with sign +1 for the chosen completion and -1 for the rejected one. Only completion tokens are scored (the
    completion is tokenized once and appended to each face's prompt); prompt and template tokens never carry reward.

    Args:
        patient (`PreTrainedModel`):
            The frozen causal LM (any `AutoModelForCausalLM` model); it is only run under `torch.inference_mode`.
        tokenizer (`PreTrainedTokenizerBase`):
            The patient's tokenizer. One without a pad token is fine (padding is masked, never read).
        config ([`TokenRewardConfig`] or [`TFPOConfig`], *optional*):
            The face prompts, `theta`, `tau`, truncation and batch size. Defaults to `TokenRewardConfig()`; a
            `TFPOConfig` gives its stage-1 settings (`to_token_reward_config()`).

    Raises:
        `TypeError`: `patient` is not a causal LM, `tokenizer` not a tokenizer, or `config` not a config.
        `ValueError`: the tokenizer has more tokens than the patient's output layer.

    [`~TokenRewardScorer.score`] scores one completion and returns its [`TokenRewards`];
    [`~TokenRewardScorer.score_dataset`] adds the five token-reward columns to a preference dataset in one of TRL's
    formats (`prompt_ids`, `chosen_ids`, `chosen_token_rewards`, `rejected_ids`, `rejected_token_rewards`), which
    [`TFPOTrainer`] trains on, and sets `.stats` (a `ScoringStats`).

    Examples:

    ```python
    >>> from datasets import Dataset
    >>> from tfpo_hf import TokenRewardConfig, TokenRewardScorer
    >>> from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

    >>> # tiny random models here; a real patient and `load_dataset(...)` work the same way
    >>> scorer = TokenRewardScorer(tiny_causal_lm(), tiny_tokenizer(), TokenRewardConfig(theta=0.5))
    >>> result = scorer.score([{"role": "user", "content": "Hi"}], "Hello!")
    >>> result.tokens  # the completion's tokens, through the chat template (here one token per byte)
    ['H', 'e', 'l', 'l', 'o', '!', '<|im_end|>', 'Ċ']
    >>> len(result.rewards) == len(result.token_ids) and all(0 <= r < 1 for r in result.rewards)
    True
    >>> all(r <= 0 for r in scorer.score("Hi", "Hello!", chosen=False).rewards)  # a rejected completion
    True

    >>> pairs = Dataset.from_list([{"prompt": "Hi", "chosen": "Hello there!", "rejected": "No."}])
    >>> scored = scorer.score_dataset(pairs)
    >>> scored.column_names[3:]
    ['prompt_ids', 'chosen_ids', 'rejected_ids', 'chosen_token_rewards', 'rejected_token_rewards']
    >>> len(scored[0]["rejected_token_rewards"]) == len(scored[0]["rejected_ids"])
    True
    >>> scorer.stats.examples, scorer.stats.completion_tokens
    (1, 17)

    ```
    """

    def __init__(
        self, patient: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: TokenRewardConfig | None = None
    ):
        _check_patient_and_tokenizer(patient, tokenizer)
        self.patient = patient
        self.tokenizer = tokenizer
        self.config = _token_reward_config(config)
        self.stats = ScoringStats()
        patient_vocab = patient.get_output_embeddings().weight.shape[0]
        if len(tokenizer) > patient_vocab:
            raise ValueError(
                f"The tokenizer has {len(tokenizer)} tokens but the patient's output layer only {patient_vocab}: "
                "they do not belong together. Pass the patient's own tokenizer."
            )

    # ------------------------------------------------------------------ log-probabilities
    @torch.inference_mode()
    def completion_logps(self, sequences: list[_Sequence]) -> list[torch.Tensor]:
        """log p(y_t | prompt, y_<t) of shape `(completion_length_i,)` (float32, CPU) for every completion, in the
        order given.

        Sequences are sorted by length and run `config.batch_size` at a time, left-padded so every completion
        ends at the last column; only the last max-completion-length + 1 positions go through the LM head.
        """
        order = sorted(
            range(len(sequences)), key=lambda i: len(sequences[i].prompt_ids) + len(sequences[i].completion_ids)
        )
        results: list[torch.Tensor | None] = [None] * len(sequences)
        device = self.patient.device
        for start in range(0, len(order), self.config.batch_size):
            chunk = order[start : start + self.config.batch_size]
            rows = [sequences[i].prompt_ids + sequences[i].completion_ids for i in chunk]
            completion_lengths = [len(sequences[i].completion_ids) for i in chunk]
            width, completion_width = max(map(len, rows)), max(completion_lengths)
            if completion_width == 0:
                for i in chunk:
                    results[i] = torch.zeros(0)
                continue
            input_ids = torch.zeros(len(rows), width, dtype=torch.long)
            attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
            targets = torch.zeros(len(rows), completion_width, dtype=torch.long)
            for row, (ids, length) in enumerate(zip(rows, completion_lengths)):
                input_ids[row, width - len(ids) :] = torch.tensor(ids)
                attention_mask[row, width - len(ids) :] = 1
                if length:
                    targets[row, completion_width - length :] = torch.tensor(ids[len(ids) - length :])
            position_ids = position_ids_from_mask(attention_mask)
            logits = self.patient(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                position_ids=position_ids.to(device),
                logits_to_keep=completion_width + 1,
                use_cache=False,
            ).logits[:, :-1]
            logps = selective_log_softmax(logits, targets.to(device)).cpu()
            for row, (index, length) in enumerate(zip(chunk, completion_lengths)):
                results[index] = logps[row, completion_width - length :]
        for sequence, logps in zip(sequences, results):
            bad = (~torch.isfinite(logps)).nonzero()
            if len(bad):
                raise ValueError(
                    f"The patient gave a non-finite log-probability ({logps[bad[0, 0]].item()}) at response "
                    f"token {bad[0, 0].item()} of {sequence.where}. Check the patient's weights and dtype "
                    "(float16 overflows; use float32 or bfloat16)."
                )
        return results

    # ------------------------------------------------------------------ shared by score and score_dataset
    def _face_sequences(self, texts, completion_ids: list[int], where: str) -> list[_Sequence]:
        """The completion after the positive face's prompt, then after the negative face's prompt."""
        return [
            _Sequence(tokenize_prompt(self.tokenizer, face_prompt, texts.conversational), completion_ids, where)
            for face_prompt in (texts.positive_prompt, texts.negative_prompt)
        ]

    def _completion_ids(self, texts) -> tuple[list[int], bool]:
        """The response's ids, cut after an EOS its text holds (`cut_at_early_eos`), and whether they were cut."""
        ids = tokenize_completion(self.tokenizer, texts.completion, texts.conversational)
        return cut_at_early_eos(ids, self.tokenizer.eos_token_id)

    def _warn_eos_text(self, count: int) -> None:
        """Warn that `count` responses held the EOS token's text before their end (and were cut after it)."""
        if count:
            warnings.warn(
                f"{count} response(s) hold the EOS token's text ({self.tokenizer.eos_token!r}) before their end: "
                "they are cut after it, since nothing after an EOS is ever generated.",
                stacklevel=3,
            )

    def _rewards(
        self, completion_ids: list[int], positive: torch.Tensor, negative: torch.Tensor, sign: float, is_empty: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Delta, S, r of shape `(completion_length,)` of one completion. Template tokens after the first EOS
        (ChatML's newline after `<|im_end|>`) are never generated by the model: they get zeros and stay out of the
        mean Delta. An empty completion gets zero rewards."""
        eos = self.tokenizer.eos_token_id
        scored = completion_ids.index(eos) + 1 if eos in completion_ids else len(completion_ids)
        delta, normalized, rewards = token_rewards_from_logps(positive[:scored], negative[:scored], sign, self.config)
        if is_empty:
            rewards = torch.zeros_like(rewards)
        padding = (0, len(completion_ids) - scored)
        return tuple(torch.nn.functional.pad(values, padding) for values in (delta, normalized, rewards))

    # ------------------------------------------------------------------ one pair
    def score(
        self, prompt: str | list[dict[str, Any]], completion: str | list[dict[str, Any]], chosen: bool = True
    ) -> TokenRewards:
        """Token rewards of one completion (positive sign if `chosen`, negative otherwise).

        `prompt` is a string or a list of chat messages; `completion` a string or a list of assistant messages. A
        completion holding the EOS token's text is cut after it, with a warning, as in `score_dataset`.
        """
        texts = format_completion(prompt, completion, self.tokenizer, self.config)
        completion_ids, cut_at_eos = self._completion_ids(texts)
        self._warn_eos_text(int(cut_at_eos))
        neutral_ids = tokenize_prompt(self.tokenizer, texts.prompt, texts.conversational)
        _, completion_ids, _, _ = truncate_pair(
            neutral_ids,
            completion_ids,
            [],
            self.config.max_length,
            self.config.max_prompt_length,
            self.config.truncation_mode,
        )
        positive, negative = self.completion_logps(self._face_sequences(texts, completion_ids, "the response"))
        delta, normalized, rewards = self._rewards(
            completion_ids, positive, negative, 1.0 if chosen else -1.0, texts.is_empty
        )
        return TokenRewards(
            token_ids=completion_ids,
            tokens=self.tokenizer.convert_ids_to_tokens(completion_ids),
            rewards=rewards.tolist(),
            delta=delta.tolist(),
            normalized=normalized.tolist(),
        )

    # ------------------------------------------------------------------ datasets
    def _score_batch(self, batch: dict[str, list], indices: list[int], dataset_format: str) -> dict[str, list]:
        """The five token-reward columns of a batch, plus `_empty_completions` and `_truncated` for the statistics."""
        examples = [as_explicit_example({k: batch[k][i] for k in batch}, dataset_format) for i in range(len(indices))]
        columns: dict[str, list] = {
            name: []
            for name in ("prompt_ids", "chosen_ids", "rejected_ids", "_empty_completions", "_truncated", "_cut_at_eos")
        }
        sequences, responses = [], []
        for index, example in zip(indices, examples):
            chosen = format_completion(example["prompt"], example["chosen"], self.tokenizer, self.config)
            rejected = format_completion(example["prompt"], example["rejected"], self.tokenizer, self.config)
            chosen_ids, chosen_cut = self._completion_ids(chosen)
            rejected_ids, rejected_cut = self._completion_ids(rejected)
            prompt_ids, chosen_ids, rejected_ids, truncated = truncate_pair(
                tokenize_prompt(self.tokenizer, chosen.prompt, chosen.conversational),
                chosen_ids,
                rejected_ids,
                self.config.max_length,
                self.config.max_prompt_length,
                self.config.truncation_mode,
            )
            columns["prompt_ids"].append(prompt_ids)
            columns["chosen_ids"].append(chosen_ids)
            columns["rejected_ids"].append(rejected_ids)
            columns["_empty_completions"].append(int(chosen.is_empty) + int(rejected.is_empty))
            columns["_truncated"].append(truncated)
            columns["_cut_at_eos"].append(int(chosen_cut) + int(rejected_cut))
            for texts, ids, name in ((chosen, chosen_ids, "chosen"), (rejected, rejected_ids, "rejected")):
                sequences += self._face_sequences(texts, ids, f"example {index} ({name} response)")
                responses.append((ids, texts.is_empty))
        logps = self.completion_logps(sequences)
        rewards_by_completion = []
        for response, (ids, is_empty) in enumerate(responses):
            sign = 1.0 if response % 2 == 0 else -1.0
            _, _, rewards = self._rewards(ids, logps[2 * response], logps[2 * response + 1], sign, is_empty)
            rewards_by_completion.append(rewards.float().tolist())
        columns["chosen_token_rewards"] = rewards_by_completion[0::2]
        columns["rejected_token_rewards"] = rewards_by_completion[1::2]
        return columns

    def fingerprint(self, dataset: Dataset) -> str:
        """Cache key of the scored dataset: the input's fingerprint, the settings, the tokenizer and the patient."""
        return Hasher.hash(
            (
                dataset._fingerprint,
                asdict(self.config),
                self.patient.config.to_json_string(),
                weights_probe(self.patient),
                self.tokenizer.name_or_path,
                len(self.tokenizer),
                self.tokenizer.chat_template,
            )
        )

    def score_dataset(
        self,
        dataset: Dataset | pd.DataFrame | dict[str, list] | list[dict[str, Any]],
        map_batch_size: int = 64,
        num_proc: int | None = None,
    ) -> Dataset:
        """Add `prompt_ids`, `chosen_ids`, `chosen_token_rewards`, `rejected_ids`, `rejected_token_rewards`.

        `dataset` is a `datasets.Dataset`, or a `pandas.DataFrame`, a dict of column lists or a list of row dicts
        (converted to a `Dataset`); a streaming `IterableDataset` is refused (materialise it first).

        Runs one batched `datasets.map` (progress bar included) whose cache is keyed by `fingerprint(dataset)`,
        so scoring the same data with the same patient and settings again loads the cached result.
        Logs the fraction of non-zero rewards and counts of empty completions and truncated examples.
        """
        dataset = as_dataset(dataset, "dataset")
        dataset_format = check_preference_dataset(dataset, "given")
        if dataset_format == "scored":
            return dataset
        scored = dataset.map(
            self._score_batch,
            batched=True,
            batch_size=map_batch_size,
            with_indices=True,
            fn_kwargs={"dataset_format": dataset_format},
            num_proc=num_proc,
            new_fingerprint=self.fingerprint(dataset),
            desc="Scoring token rewards",
        )
        # Counted from the result, so they hold with num_proc > 1 and when the map was loaded from the cache.
        rewards = reward_statistics(scored)
        self.stats = ScoringStats(
            examples=len(scored),
            empty_completions=sum(scored["_empty_completions"]),
            truncated_examples=sum(scored["_truncated"]),
            completion_tokens=rewards["completion_tokens"],
            nonzero_rewards=rewards["nonzero_rewards"],
        )
        cut_at_eos = sum(scored["_cut_at_eos"])
        scored = scored.remove_columns(["_empty_completions", "_truncated", "_cut_at_eos"])
        self._warn_eos_text(cut_at_eos)
        if self.stats.empty_completions:
            logger.warning(f"{self.stats.empty_completions} empty responses got all-zero token rewards.")
        if self.stats.truncated_examples:
            logger.warning(
                f"{self.stats.truncated_examples} examples were truncated to max_length={self.config.max_length} "
                f"(max_prompt_length={self.config.max_prompt_length}, truncation_mode={self.config.truncation_mode})."
            )
        if self.stats.examples:
            logger.info(
                f"Scored {self.stats.examples} examples, {self.stats.completion_tokens} response tokens; "
                f"non-zero rewards: {self.stats.nonzero_fraction:.1%} (theta={self.config.theta})."
            )
        return scored


def _check_patient_and_tokenizer(patient: Any, tokenizer: Any) -> None:
    """Refuse, naming the argument, a patient that is not a causal LM or a tokenizer that is not a tokenizer."""
    if not isinstance(patient, nn.Module) or not hasattr(patient, "get_output_embeddings"):
        swapped = " (the order is patient, tokenizer)" if isinstance(patient, PreTrainedTokenizerBase) else ""
        raise TypeError(
            f"TokenRewardScorer needs `patient`: a causal LM, got {_given(patient)}{swapped}. Load it with "
            "`AutoModelForCausalLM.from_pretrained(name)` (or `tfpo_hf.load_default_patient()`)."
        )
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise TypeError(
            f"TokenRewardScorer needs `tokenizer`: the patient's tokenizer, got {_given(tokenizer)}. Load it with "
            "`AutoTokenizer.from_pretrained(name)`, `name` being the patient's."
        )


def _token_reward_config(config: Any) -> TokenRewardConfig:
    """`config` as a `TokenRewardConfig`: the default for None, a `TFPOConfig`'s stage-1 settings for one."""
    if config is None:
        return TokenRewardConfig()
    if hasattr(config, "to_token_reward_config"):
        return config.to_token_reward_config()
    if not isinstance(config, TokenRewardConfig):
        raise TypeError(
            f"`config` must be a TokenRewardConfig (or a TFPOConfig), got {_given(config)}. Build one with "
            "`TokenRewardConfig(theta=..., tau=...)`."
        )
    return config


def reward_statistics(dataset: Dataset) -> dict[str, float]:
    """Sparsity and mean rewards of a scored dataset (reads the reward columns only)."""
    chosen = [r for rewards in dataset["chosen_token_rewards"] for r in rewards]
    rejected = [r for rewards in dataset["rejected_token_rewards"] for r in rewards]
    all_rewards = chosen + rejected
    nonzero = sum(r != 0 for r in all_rewards)
    return {
        "completion_tokens": len(all_rewards),
        "nonzero_rewards": nonzero,
        "nonzero_fraction": nonzero / max(len(all_rewards), 1),
        "mean_chosen_reward": sum(chosen) / max(len(chosen), 1),
        "mean_rejected_reward": sum(rejected) / max(len(rejected), 1),
    }


def reward_by_token(dataset: Dataset, tokenizer=None, top: int = 10) -> dict[str, list[tuple[str, float, int]]]:
    """Which tokens carry the reward of a scored dataset: each token id's reward summed over every chosen and rejected
    completion, the `top` most negative and most positive, as `(token, total reward, occurrences)`. A token that
    collects a large total on one side only because it is frequent in the chosen (or rejected) completions (`.`, `,`,
    end of turn) is a reward a doctor learns as a style, not as the preference: check this before training on a new
    pair of faces or a new dataset.

    Args:
        dataset (`Dataset`): scored pairs (`chosen_ids`, `chosen_token_rewards`, `rejected_ids`,
            `rejected_token_rewards`), as `score_dataset` writes them.
        tokenizer (*optional*): decodes each token id; without it tokens are shown as their ids.
        top (`int`): how many tokens of each sign.

    Returns:
        `dict` with `most_negative` (lowest total first) and `most_positive` (highest total first).
    """
    totals: dict[int, float] = {}
    counts: dict[int, int] = {}
    for side in ("chosen", "rejected"):
        for ids, rewards in zip(dataset[f"{side}_ids"], dataset[f"{side}_token_rewards"]):
            for token_id, reward in zip(ids, rewards):
                totals[token_id] = totals.get(token_id, 0.0) + reward
                counts[token_id] = counts.get(token_id, 0) + 1

    def entry(token_id: int) -> tuple[str, float, int]:
        text = tokenizer.decode([token_id]) if tokenizer is not None else str(token_id)
        return text, totals[token_id], counts[token_id]

    ranked = sorted(totals, key=totals.__getitem__)
    return {
        "most_negative": [entry(token_id) for token_id in ranked[:top] if totals[token_id] < 0],
        "most_positive": [entry(token_id) for token_id in reversed(ranked[-top:]) if totals[token_id] > 0],
    }
