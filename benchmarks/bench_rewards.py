"""Token-reward acquisition throughput: `TokenRewardScorer.score_dataset` versus one plain patient forward.

On a synthetic conversational preference dataset (English sentences, varied lengths, no download), prints
response tokens per second of

- `score_dataset`: end to end (chat template, tokenization, both faces for chosen and rejected, rewards,
  `datasets.map`), and
- a plain batched forward of the patient over the same (neutral prompt + response) sequences: same batch
  size, dataset order, right-padded, ordinary full-logits forward, no sorting or logit slicing,

and their ratio. The scorer runs the patient twice per response (two faces), so 0.5 is the natural ceiling;
it can beat that only through what it saves (length sorting, LM head over response positions only).
Both variants run side by side in one process, `--repeats` times; minimum and median are printed.
Also prints the fraction of non-zero rewards, overall and for the first examples.

    python benchmarks/bench_rewards.py [--n 32] [--dtype float32|bfloat16] [--threads 2] [--repeats 3]
    python benchmarks/bench_rewards.py --smoke   # the tiny random test models, 4 pairs, 2 repeats, 1 thread: seconds
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time

import torch
from datasets import Dataset, disable_progress_bars

from tfpo_hf.rewards.config import TokenRewardConfig
from tfpo_hf.rewards.preference_data import format_completion, tokenize_completion, tokenize_prompt
from tfpo_hf.rewards.scorer import TokenRewardScorer, reward_statistics


SENTENCES = [
    "The river bends sharply just before it reaches the old stone bridge.",
    "Bread rises because yeast turns sugar into carbon dioxide.",
    "Most of the museum's paintings were donated by a single family.",
    "Rain is expected tomorrow afternoon.",
    "She finished the marathon in just under four hours, which surprised everyone including herself.",
    "A good cover letter explains why you want this particular job.",
    "The committee postponed its decision until more data is available.",
    "Tomatoes grow best in full sun with regular watering.",
    "He forgot his umbrella again.",
    "Interest rates affect how much it costs to borrow money for a house or a car.",
    "The library closes at eight on weekdays and at five on Saturdays.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Our train was delayed by forty minutes because of a signal failure near the station.",
    "Please remember to back up your files before installing the update.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "Whales communicate over long distances using low-frequency sounds.",
    "It is polite to reply to an invitation even if you cannot attend.",
    "The new bridge will cut the commute by about fifteen minutes.",
    "Yes.",
    "I am not sure.",
    "Regular exercise improves sleep quality, mood and long-term heart health.",
    "The function returns None when the input list is empty.",
    "Shakespeare wrote thirty-seven plays, among them comedies, tragedies and histories.",
    "Mountains create their own weather, so conditions can change within an hour.",
    "Water the plant once a week and keep it away from cold drafts.",
    "That depends on many things.",
    "The treaty was signed in 1648 and ended decades of war in central Europe.",
    "Store the batteries in a cool, dry place out of reach of children.",
    "The algorithm sorts the list in place and uses constant extra memory.",
    "Fresh snow reflects most of the sunlight that falls on it.",
]
QUESTIONS = [
    "How do I keep a houseplant alive?",
    "Can you explain how bread rises?",
    "What should I know before my first marathon?",
    "Why was my train late?",
    "What is photosynthesis?",
    "Summarise the history of the Peace of Westphalia.",
    "How should I store spare batteries?",
    "What does this sorting function do?",
    "Is it going to rain?",
    "Give me advice on writing a cover letter.",
    "Why do whales sing?",
    "What affects the cost of a mortgage?",
]


# --smoke: the tiny random models of tfpo_hf.testing and these sizes (explicit flags still win over them).
SMOKE = {"n": 4, "repeats": 2, "batch_size": 4, "show": 2, "threads": 1}


def synthetic_dataset(n: int, seed: int = 0) -> Dataset:
    """`n` conversational preference pairs: a question (plus some context) and two answers of varied length."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        question = rng.choice(QUESTIONS)
        context = " ".join(rng.sample(SENTENCES, rng.randint(0, 2)))
        prompt = [{"role": "user", "content": f"{context} {question}".strip()}]
        chosen = " ".join(rng.sample(SENTENCES, rng.randint(2, 7)))
        rejected = " ".join(rng.sample(SENTENCES, rng.randint(1, 3)))
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        )
    return Dataset.from_list(rows)


@torch.inference_mode()
def plain_forward(patient, sequences: list[list[int]], batch_size: int, pad_id: int) -> None:
    """The baseline: right-padded batches in the given order, one ordinary full-logits forward each."""
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        width = max(map(len, chunk))
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, ids in enumerate(chunk):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            attention_mask[row, : len(ids)] = 1
        patient(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32, help="preference pairs in the synthetic dataset")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="patient weights dtype")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per forward, both variants")
    parser.add_argument("--theta", type=float, default=TokenRewardConfig.theta)
    parser.add_argument("--show", type=int, default=4, help="examples whose sparsity is printed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"a run of seconds on the tiny random test models, what the tests run: {SMOKE}",
    )
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(**SMOKE)
        args = parser.parse_args()

    torch.set_num_threads(args.threads)
    disable_progress_bars()
    logging.basicConfig(level=logging.WARNING)
    dtype = getattr(torch, args.dtype)
    if args.smoke:
        from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

        patient, tokenizer, name = tiny_causal_lm(hidden_size=64).to(dtype), tiny_tokenizer(), "tiny random Llama"
    else:
        from tfpo_hf.utils.embedded_patient import load_default_patient

        patient, tokenizer = load_default_patient(dtype=dtype)
        name = "SmolLM2-135M-Instruct"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    dataset = synthetic_dataset(args.n, args.seed)
    scorer = TokenRewardScorer(patient, tokenizer, TokenRewardConfig(batch_size=args.batch_size, theta=args.theta))
    # The baseline's sequences: neutral prompt + response ids, built with the scorer's own formatting (untimed).
    sequences, completion_tokens, prompt_tokens = [], 0, 0
    for example in dataset:
        for column in ("chosen", "rejected"):
            texts = format_completion(example["prompt"], example[column], tokenizer, scorer.config)
            prompt_ids = tokenize_prompt(tokenizer, texts.prompt, texts.conversational)
            response_ids = tokenize_completion(tokenizer, texts.completion, texts.conversational)
            sequences.append(prompt_ids + response_ids)
            completion_tokens += len(response_ids)
        prompt_tokens += len(prompt_ids)
    scorer.score_dataset(dataset.select(range(min(2, len(dataset)))))  # warm-up
    plain_forward(patient, sequences[: min(4, len(sequences))], args.batch_size, pad_id)  # warm-up

    times: dict[str, list[float]] = {"score_dataset": [], "plain forward": []}
    scored = None
    for repeat in range(args.repeats):

        def run_scorer():
            nonlocal scored
            scored = scorer.score_dataset(dataset)

        variants = [
            ("plain forward", lambda: plain_forward(patient, sequences, args.batch_size, pad_id)),
            ("score_dataset", run_scorer),
        ]
        if repeat % 2:
            variants.reverse()
        for variant, function in variants:
            times[variant].append(timed(function))
    assert completion_tokens == sum(len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in scored)

    print(f"patient: {name}, dtype {args.dtype}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(
        f"data: {args.n} pairs, {2 * args.n} responses, {completion_tokens} response tokens "
        f"(mean {completion_tokens / (2 * args.n):.1f}), mean neutral prompt {prompt_tokens / args.n:.1f} tokens; "
        f"batch size {args.batch_size}; {args.repeats} repeats"
    )
    print(f"{'variant':<16}{'min s':>9}{'median s':>10}{'tok/s (best)':>14}{'tok/s (median)':>16}")
    for variant, values in times.items():
        best, median = min(values), statistics.median(values)
        print(
            f"{variant:<16}{best:>9.3f}{median:>10.3f}{completion_tokens / best:>14.1f}{completion_tokens / median:>16.1f}"
        )
    ratio_best = min(times["plain forward"]) / min(times["score_dataset"])
    ratio_median = statistics.median(times["plain forward"]) / statistics.median(times["score_dataset"])
    print(
        f"ratio score_dataset / plain forward (response tok/s): {ratio_best:.3f} (best), {ratio_median:.3f} (median); "
        "ceiling ~0.5 (two faces), target >= 0.45"
    )

    stats = reward_statistics(scored)
    print(
        f"rewards (theta={args.theta}): non-zero fraction {stats['nonzero_fraction']:.3f}, "
        f"mean chosen {stats['mean_chosen_reward']:+.3f}, mean rejected {stats['mean_rejected_reward']:+.3f}"
    )
    for index in range(min(args.show, len(scored))):
        example = scored[index]
        parts = []
        for column in ("chosen", "rejected"):
            rewards = example[f"{column}_token_rewards"]
            nonzero = sum(r != 0 for r in rewards)
            parts.append(f"{column} {nonzero}/{len(rewards)} = {nonzero / max(len(rewards), 1):.2f}")
        print(f"  example {index}: " + ", ".join(parts))


if __name__ == "__main__":
    main()
