import random

import pytest
from datasets import Dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from tfpo_hf.cross_tokenizer import TokenBytes
from tfpo_hf.cross_tokenizer.reward_transfer import retokenize_for_doctor, transfer_token_rewards
from tfpo_hf.rewards import TokenRewardConfig, TokenRewardScorer
from tfpo_hf.testing import tiny_bpe_tokenizer, tiny_causal_lm, tiny_tokenizer


BYTES_TOKENIZER = tiny_tokenizer()
BPE_TOKENIZER = tiny_bpe_tokenizer()
TEXTS = st.text(alphabet="the cats é日本語\n:.", min_size=1, max_size=24)


def holder_by_brute_force(source_ids, source_bytes, target_ids, target_bytes):
    """For each source token spelling text, the index of the target token whose byte span holds its last byte."""
    owner_of_byte = []
    for position, index in enumerate(target_ids):
        owner_of_byte += [position] * len(target_bytes.by_id[index])
    holders, offset = [], 0
    for index in source_ids:
        offset += len(source_bytes.by_id[index])
        holders.append(owner_of_byte[offset - 1] if source_bytes.by_id[index] else None)
    return holders


@settings(max_examples=80, deadline=None)
@given(text=TEXTS, seed=st.integers(0, 1000), bpe_to_bytes=st.booleans())
def test_each_reward_lands_on_the_token_holding_its_last_byte_and_totals_are_kept(text, seed, bpe_to_bytes):
    source, target = (BPE_TOKENIZER, BYTES_TOKENIZER) if bpe_to_bytes else (BYTES_TOKENIZER, BPE_TOKENIZER)
    source_bytes, target_bytes = TokenBytes.from_tokenizer(source), TokenBytes.from_tokenizer(target)
    source_ids = source.encode(text, add_special_tokens=False)
    target_ids = target.encode(text, add_special_tokens=False)
    generator = random.Random(seed)
    rewards = [generator.choice([0.0, 0.5, -1.25, 2.0]) for _ in source_ids]
    moved = transfer_token_rewards(source_ids, rewards, source_bytes, target_ids, target_bytes)
    assert len(moved) == len(target_ids)
    assert sum(moved) == pytest.approx(sum(rewards))
    expected = [0.0] * len(target_ids)
    for reward, holder in zip(rewards, holder_by_brute_force(source_ids, source_bytes, target_ids, target_bytes)):
        expected[holder] += reward
    assert moved == pytest.approx(expected)


def test_a_reward_inside_a_split_character_goes_to_the_token_completing_it():
    source_bytes = TokenBytes((b"", b"caf", b"\xc3", b"\xa9!"))
    target_bytes = TokenBytes((b"", b"ca", b"f\xc3\xa9", b"!"))
    moved = transfer_token_rewards([1, 2, 3], [1.0, 2.0, 4.0], source_bytes, [1, 2, 3], target_bytes)
    assert moved == [0.0, 3.0, 4.0]


def test_the_end_of_turn_reward_goes_to_the_doctors_end_of_turn():
    source_bytes = TokenBytes((b"", b"hi", b"\n"))  # id 0: the patient's end of turn
    target_bytes = TokenBytes((b"h", b"i", b"", b"\n"))  # id 2: the doctor's end of turn
    moved = transfer_token_rewards([1, 0, 2], [1.0, 5.0, 0.0], source_bytes, [0, 1, 2, 3], target_bytes)
    assert moved == [0.0, 1.0, 5.0, 0.0]
    without_end_of_turn = transfer_token_rewards([1, 0], [1.0, 5.0], source_bytes, [0, 1], target_bytes)
    assert without_end_of_turn == [0.0, 6.0]


def test_identical_tokenizations_keep_every_reward_in_place():
    token_bytes = TokenBytes.from_tokenizer(BPE_TOKENIZER)
    ids = BPE_TOKENIZER.encode("the cats sat on the mat", add_special_tokens=False)
    rewards = [float(position) for position in range(len(ids))]
    assert transfer_token_rewards(ids, rewards, token_bytes, ids, token_bytes) == rewards


def test_a_dataset_scored_by_the_patient_trains_a_doctor_of_another_tokenizer():
    patient = tiny_causal_lm(seed=1)
    doctor_tokenizer = tiny_bpe_tokenizer()
    config = TokenRewardConfig(theta=0.0)
    pairs = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": "Rate the cat."}], [{"role": "user", "content": "Say hi"}]],
            "chosen": [
                [{"role": "assistant", "content": "the cats sat, café"}],
                [{"role": "assistant", "content": "hi 日本"}],
            ],
            "rejected": [[{"role": "assistant", "content": "a cat"}], [{"role": "assistant", "content": "no"}]],
        }
    )
    scored = TokenRewardScorer(patient, BYTES_TOKENIZER, config).score_dataset(pairs)
    moved = retokenize_for_doctor(scored, BYTES_TOKENIZER, doctor_tokenizer, config)
    for row, original in zip(moved, scored):
        prompt_text = doctor_tokenizer.apply_chat_template(
            original["prompt"], tokenize=False, add_generation_prompt=True
        )
        assert row["prompt_ids"] == doctor_tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        for side in ("chosen", "rejected"):
            text = original[side][0]["content"]
            assert doctor_tokenizer.decode(row[f"{side}_ids"]).startswith(text)
            assert len(row[f"{side}_token_rewards"]) == len(row[f"{side}_ids"])
            assert sum(row[f"{side}_token_rewards"]) == pytest.approx(sum(original[f"{side}_token_rewards"]))
            assert any(row[f"{side}_token_rewards"])


def test_retokenizing_needs_the_text_columns():
    patient = tiny_causal_lm(seed=1)
    config = TokenRewardConfig()
    scored = TokenRewardScorer(patient, BYTES_TOKENIZER, config).score_dataset(
        {"prompt": ["Hi"], "chosen": ["good"], "rejected": ["bad"]}
    )
    with pytest.raises(ValueError, match="not a preference dataset"):
        retokenize_for_doctor(
            scored.remove_columns(["prompt", "chosen", "rejected"]), BYTES_TOKENIZER, BPE_TOKENIZER, config
        )
