"""The reference-anchored flow: log Q(s_t) = sum_k [r_k + log pi_ref(y_k | s_k-1)], with pi_ref the doctor's initial
weights (LoRA: adapter disabled; full weights: a frozen copy), precomputed into dataset columns or computed per batch;
and what the trainer records for decoding."""

import json

import pytest
import torch
from peft import LoraConfig

from tfpo_hf import DoctorModel, TokenRewardCollator
from tfpo_hf.testing import tiny_causal_lm
from tfpo_hf.training.losses import prefix_scores

from ..helpers.disk import saved_and_reloaded
from ..helpers.tiny_data import scored_dataset
from ..helpers.training import make_args, tiny_trainer


def lora_config():
    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])


def make_trainer(tmp_path, lora: bool, dataset, **overrides):
    base = saved_and_reloaded(tiny_causal_lm(seed=2), tmp_path / "base")  # a LoRA doctor's base must be reloadable
    return tiny_trainer(
        make_args(tmp_path / "out", **overrides),
        dataset,
        DoctorModel(base),
        peft_config=lora_config() if lora else None,
    )


def batch_of(trainer, size=4):
    return trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in range(size)]))


def subtb_of(trainer, inputs) -> float:
    trainer.model.eval()
    with torch.no_grad():
        trainer.compute_loss(trainer.model, inputs)
    return trainer._metrics["eval"]["loss/subtb"][-1]


def perturb(trainer, seed=0):
    """Move the doctor away from its initial weights, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in trainer.model.named_parameters():
            if parameter.requires_grad and "value_head" not in name:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)


def test_prefix_scores_by_hand():
    rewards = torch.tensor([[0.5, -1.0, 0.0], [1.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    ref = torch.tensor([[-2.0, -1.0, -3.0], [-0.5, 9.0, 9.0]])
    assert torch.equal(prefix_scores(rewards, mask), torch.tensor([[0.0, 0.5, -0.5, -0.5], [0.0, 1.0, 1.0, 1.0]]))
    assert torch.equal(
        prefix_scores(rewards, mask, ref), torch.tensor([[0.0, -1.5, -3.5, -6.5], [0.0, 0.5, 0.5, 0.5]])
    )
    with pytest.raises(ValueError, match="share the shape"):
        prefix_scores(rewards, mask, ref[:, :2])


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full-weights"])
@pytest.mark.parametrize("precompute", [True, False], ids=["precomputed", "per-batch"])
def test_doctor_equal_to_its_reference_with_zero_rewards_is_balanced(tmp_path, lora, precompute):
    """log pi_d = log pi_ref, r = 0 and log V constant (the zero-initialised head): every residual is 0."""
    dataset = scored_dataset(8, zero_rewards=True)
    with pytest.warns(UserWarning, match="Every token reward"):
        anchored = make_trainer(tmp_path, lora, dataset, precompute_ref_log_probs=precompute)
    assert subtb_of(anchored, batch_of(anchored)) < 1e-8
    with pytest.warns(UserWarning, match="Every token reward"):
        literal = make_trainer(tmp_path, lora, dataset, flow_reference="none")
    assert subtb_of(literal, batch_of(literal)) > 1.0  # log Q = 0 asks every log-probability to rise to 0


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full-weights"])
def test_precomputed_and_per_batch_references_give_the_same_loss(tmp_path, lora):
    dataset = scored_dataset(8, seed=4)
    precomputed = make_trainer(tmp_path / "a", lora, dataset, precompute_ref_log_probs=True)
    per_batch = make_trainer(tmp_path / "b", lora, dataset, precompute_ref_log_probs=False)
    assert "ref_chosen_token_logps" in precomputed.train_dataset.column_names
    assert "ref_chosen_token_logps" not in per_batch.train_dataset.column_names
    assert (per_batch.ref_model is None) == lora  # LoRA: the adapter is disabled, nothing is copied
    for trainer in (precomputed, per_batch):
        perturb(trainer)
    with torch.no_grad():
        a, b = batch_of(precomputed), batch_of(per_batch)
        mask = a["completion_mask"]
        assert torch.equal(mask, b["completion_mask"])
        assert torch.allclose(
            precomputed.compute_ref_logps(a) * mask, per_batch.compute_ref_logps(b) * mask, atol=1e-5
        )
        loss_a = precomputed.compute_loss(precomputed.model.eval(), a)
        loss_b = per_batch.compute_loss(per_batch.model.eval(), b)
    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-5, abs=1e-6)
    # The reference is the *initial* doctor: after the perturbation the doctor no longer matches it.
    doctor_logps = per_batch.compute_ref_logps(b)
    from tfpo_hf.training.trainer import completion_forward

    with torch.no_grad():
        current = completion_forward(per_batch.model, b)[0]
    assert not torch.allclose(doctor_logps * b["completion_mask"], current * b["completion_mask"], atol=1e-3)


def test_training_with_per_batch_reference_runs_and_logs_implicit_rewards(tmp_path):
    trainer = make_trainer(tmp_path, True, scored_dataset(8), precompute_ref_log_probs=False, learning_rate=1e-2)
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "rewards/margins" in entry)
    assert all(torch.isfinite(torch.tensor(logged[k])) for k in ("rewards/chosen", "rewards/rejected", "loss/subtb"))


def test_collator_pads_reference_columns():
    collator = TokenRewardCollator(pad_token_id=2)
    features = [
        {
            "prompt_ids": [1, 5],
            "chosen_ids": [7, 8, 9],
            "chosen_token_rewards": [0.1, 0.0, 0.2],
            "rejected_ids": [6],
            "rejected_token_rewards": [-0.3],
            "ref_chosen_token_logps": [-1.0, -2.0, -3.0],
            "ref_rejected_token_logps": [-4.0],
        },
    ]
    batch = collator(features)
    assert torch.equal(batch["ref_token_logps"], torch.tensor([[-1.0, -2.0, -3.0], [-4.0, 0.0, 0.0]]))
    features[0]["ref_rejected_token_logps"] = [-4.0, -5.0]
    with pytest.raises(ValueError, match="2 reference log-probabilities for a response of 1 tokens"):
        collator(features)


@pytest.mark.parametrize(
    "flow_reference, lora, from_patient, expected",
    [
        ("initial", True, True, {"guidance": "ratio", "guidance_reference": "patient", "copy_of_patient": True}),
        ("initial", True, False, {"guidance": "ratio", "guidance_reference": "initial"}),
        ("none", True, True, {"guidance": "mix", "flow_reference": "none"}),
    ],
)
def test_saved_doctor_records_reference_and_decoding_defaults(tmp_path, flow_reference, lora, from_patient, expected):
    patient = saved_and_reloaded(tiny_causal_lm(seed=2), tmp_path / "patient")
    other = saved_and_reloaded(tiny_causal_lm(seed=3), tmp_path / "other")  # a LoRA doctor's base must be reloadable
    doctor = DoctorModel.from_patient(patient) if from_patient else DoctorModel(other)
    trainer = tiny_trainer(
        make_args(tmp_path / "out", flow_reference=flow_reference, guidance_beta=3.0),
        scored_dataset(4),
        doctor,
        peft_config=lora_config() if lora else None,
    )
    trainer.save_model()
    saved = json.loads((tmp_path / "out" / "doctor_config.json").read_text())
    assert saved["beta"] == 3.0 and saved["alpha"] == 1.0
    for key, value in expected.items():
        assert saved[key] == value, key
    if flow_reference == "none":
        assert "guidance_reference" not in saved
