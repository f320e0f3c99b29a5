"""`TFPOTrainer` with a patient and a doctor of different tokenizers (`patient_processing_class`)."""

import math

import pytest
from datasets import Dataset
from transformers import AutoTokenizer

from tfpo_hf import DoctorModel, TFPOTrainer
from tfpo_hf.cross_tokenizer import TokenBytes
from tfpo_hf.testing import tiny_bpe_tokenizer, tiny_causal_lm, tiny_tokenizer

from ..helpers.tiny_data import letter_preference_dataset
from ..helpers.training import make_args


def word_pairs(size):
    """Pairs of words the BPE merged (so the doctor spells them in fewer tokens than the byte-level patient)."""
    chosen, rejected = ["the cats sat", "the mat", "café"], ["a catalog", "other cattle", "naïve cats"]
    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": f"Say something {index}"}],
                "chosen": [{"role": "assistant", "content": chosen[index % 3]}],
                "rejected": [{"role": "assistant", "content": rejected[index % 3]}],
            }
            for index in range(size)
        ]
    )


def test_a_doctor_of_another_tokenizer_trains_on_rewards_moved_to_its_tokens(tmp_path):
    tokenizer = tiny_bpe_tokenizer()
    pairs = word_pairs(8)
    trainer = TFPOTrainer(
        DoctorModel(tiny_causal_lm(vocab_size=len(tokenizer), seed=1)),
        patient_model=tiny_causal_lm(),
        args=make_args(tmp_path / "out", max_steps=2),
        train_dataset=pairs,
        processing_class=tokenizer,
        patient_processing_class=tiny_tokenizer(),
    )
    doctor_bytes = TokenBytes.from_tokenizer(tokenizer)
    fewer_tokens = []
    for row, pair in zip(trainer.train_dataset, pairs):
        for side in ("chosen", "rejected"):
            text = pair[side][0]["content"].encode()
            spelled = b"".join(doctor_bytes.by_id[index] for index in row[f"{side}_ids"])
            assert spelled.startswith(text)  # the doctor's own tokens of the response (then its end of turn)
            assert len(row[f"{side}_token_rewards"]) == len(row[f"{side}_ids"])
            fewer_tokens.append(len(row[f"{side}_ids"]) < len(text) + 2)  # + the end of turn and its newline
    assert all(fewer_tokens)
    assert any(any(row["chosen_token_rewards"]) for row in trainer.train_dataset)
    assert math.isfinite(trainer.train().training_loss)


def test_the_patients_head_is_checked_against_its_own_tokenizer(tmp_path):
    tokenizer = tiny_bpe_tokenizer()
    with pytest.raises(ValueError, match="The patient's tokenizer .* has 259 tokens, but its LM head has 200 rows"):
        TFPOTrainer(
            DoctorModel(tiny_causal_lm(vocab_size=len(tokenizer))),
            patient_model=tiny_causal_lm(vocab_size=200),
            args=make_args(tmp_path / "out"),
            train_dataset=letter_preference_dataset(4),
            processing_class=tokenizer,
            patient_processing_class=tiny_tokenizer(),
        )


def test_a_tokenizer_that_does_not_spell_bytes_is_refused_before_scoring(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece({"[UNK]": 0, "cat": 1, "##s": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()
    word_piece = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[UNK]")
    with pytest.raises(ValueError, match="does not spell text byte by byte"):
        TFPOTrainer(
            DoctorModel(tiny_causal_lm(vocab_size=len(word_piece))),
            patient_model=tiny_causal_lm(),
            args=make_args(tmp_path / "out"),
            train_dataset=letter_preference_dataset(4),
            processing_class=word_piece,
            patient_processing_class=tiny_tokenizer(),
        )


def test_the_train_command_trains_a_named_doctor_of_another_tokenizer(tmp_path):
    from tfpo_hf.cli import main

    patient, doctor = tmp_path / "patient", tmp_path / "doctor"
    tiny_causal_lm(seed=1).save_pretrained(patient)
    tiny_tokenizer().save_pretrained(patient)
    tokenizer = tiny_bpe_tokenizer()
    tiny_causal_lm(vocab_size=len(tokenizer), seed=2).save_pretrained(doctor)
    tokenizer.save_pretrained(doctor)
    dataset_file = tmp_path / "prefs.jsonl"
    word_pairs(8).to_json(str(dataset_file))
    main(
        ["train", "--dataset", str(dataset_file), "--patient", str(patient), "--doctor", str(doctor)]
        + ["--max_steps", "2", "--per_device_train_batch_size", "4", "--report_to", "none", "--use_cpu", "true"]
        + ["--save_strategy", "no", "--output_dir", str(tmp_path / "trained")]
    )
    trained = tmp_path / "trained"
    assert (trained / "value_head.safetensors").exists()
    assert len(AutoTokenizer.from_pretrained(trained)) == len(tokenizer), "saved with the doctor's own tokenizer"
