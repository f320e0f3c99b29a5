"""`TFPOTrainer` with a doctor and a patient of one family whose LM heads have different widths over one tokenizer
(Qwen2.5-7B's head has 152,064 rows, Qwen2.5-3B's 151,936, for 151,665 tokens): token rewards are indexed by the
tokenizer's ids, so any widths at least `len(tokenizer)` train; a head narrower than the tokenizer is refused."""

import math

import pytest

from tfpo_hf import DoctorModel
from tfpo_hf.testing import tiny_causal_lm

from ..helpers.tiny_data import letter_preference_dataset
from ..helpers.training import make_args, tiny_trainer


NARROW, WIDE = 272, 288  # LM-head widths over the tiny tokenizer's 259 tokens


@pytest.mark.parametrize("doctor_width, patient_width", [(WIDE, NARROW), (NARROW, WIDE)])
def test_heads_wider_than_the_tokenizer_score_and_train(tmp_path, doctor_width, patient_width):
    # stage 1 scores the pairs with the patient, then one step trains the doctor against its initial weights
    trainer = tiny_trainer(
        make_args(tmp_path / "out", max_steps=1, flow_reference="initial"),
        letter_preference_dataset(4),
        DoctorModel(tiny_causal_lm(vocab_size=doctor_width, seed=1)),
        patient_model=tiny_causal_lm(vocab_size=patient_width),
    )
    assert max(max(row["chosen_ids"]) for row in trainer.train_dataset) < 259
    loss = trainer.train().training_loss
    assert math.isfinite(loss)


@pytest.mark.parametrize(
    "doctor_width, patient_width, narrow",
    [(200, WIDE, "the doctor"), (WIDE, 230, "the patient"), (200, 230, "the doctor and the patient")],
)
def test_a_head_narrower_than_the_tokenizer_is_refused(tmp_path, doctor_width, patient_width, narrow):
    with pytest.raises(ValueError) as error:
        tiny_trainer(
            make_args(tmp_path / "out"),
            letter_preference_dataset(4),
            DoctorModel(tiny_causal_lm(vocab_size=doctor_width)),
            patient_model=tiny_causal_lm(vocab_size=patient_width),
        )
    message = str(error.value)
    assert "has 259 tokens" in message
    assert (
        f"the doctor's LM head has {doctor_width} rows and the patient's LM head has {patient_width} rows" in message
    )
    assert f"token ids {min(doctor_width, patient_width)} to 258 have no row in the LM head of {narrow}." in message
    assert "Pass the tokenizer of the patient's model family as `processing_class`" in message
