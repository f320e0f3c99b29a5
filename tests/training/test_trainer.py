"""TFPOTrainer: the loss against an unpadded per-sequence reference, learning on a toy task, saving, resuming,
PEFT, and the bad inputs the trainer must reject with a clear error."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from tfpo_hf import DoctorModel, TFPOConfig
from tfpo_hf.testing import tiny_causal_lm

from ..helpers.disk import saved_and_reloaded
from ..helpers.reference_losses import subtrajectory_balance_loss_reference
from ..helpers.tiny_data import letter_preference_dataset, scored_dataset
from ..helpers.training import make_args, tiny_trainer


def random_value_head(doctor: DoctorModel, seed: int = 0) -> DoctorModel:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = doctor.value_head.summary.weight
        weight.copy_(torch.randn(weight.shape, generator=generator) * 0.3)
    return doctor


@pytest.mark.parametrize("flow_reference", ["initial", "none"])
def test_compute_loss_matches_unpadded_per_sequence_reference(tmp_path, flow_reference):
    dataset = scored_dataset(4, seed=3)
    doctor = random_value_head(DoctorModel(tiny_causal_lm(seed=3)))
    trainer = tiny_trainer(
        make_args(tmp_path / "out", lambda_value=0.3, gamma=0.2, flow_reference=flow_reference), dataset, doctor
    )
    examples = [trainer.train_dataset[i] for i in range(4)]
    batch = trainer.data_collator(examples)
    doctor.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(doctor, batch)

    def unpadded(prompt, completion, rewards):
        """logps [1, T], log flows [1, T+1] and log V [T+1] of one sequence run alone; the reference is the
        untrained doctor itself, so log Q adds its own log-probabilities."""
        ids = torch.tensor([prompt + completion])
        with torch.no_grad():
            out = doctor(ids)
        start = len(prompt) - 1
        logits = out.logits[0, start : start + len(completion)].double()
        logps = logits.log_softmax(-1).gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)
        log_values = out.log_values[0, start : start + len(completion) + 1].double()
        steps = torch.tensor(rewards, dtype=torch.float64)
        if flow_reference == "initial":
            steps = steps + logps
        log_q = torch.cat([torch.zeros(1, dtype=torch.float64), steps.cumsum(0)])
        return logps[None], (log_q + log_values)[None], log_values

    subtb_terms, hinges, values = [], [], {}
    for index, example in enumerate(examples):
        for side in ("chosen", "rejected"):
            ids, rewards = example[f"{side}_ids"], example[f"{side}_token_rewards"]
            logps, log_flows, log_values = unpadded(example["prompt_ids"], ids, rewards)
            subtb_terms.append(subtrajectory_balance_loss_reference(logps, log_flows, torch.ones_like(logps)))
            values[index, side] = log_values
        aligned = min(len(example["chosen_ids"]), len(example["rejected_ids"]))
        for t in range(1, aligned + 1):
            hinges.append(max(0.0, 0.2 - float(values[index, "chosen"][t] - values[index, "rejected"][t])))
    expected = torch.stack(subtb_terms).mean() + 0.3 * sum(hinges) / len(hinges)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("flow_reference", ["initial", "none"])
def test_doctor_learns_toy_preference_and_loss_decreases(tmp_path, flow_reference):
    args = make_args(
        tmp_path / "out",
        max_steps=60,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        learning_rate=1e-2,
        logging_steps=10,
        flow_reference=flow_reference,
    )
    trainer = tiny_trainer(
        args,
        letter_preference_dataset(48, seed=0),
        DoctorModel(tiny_causal_lm(seed=2, logit_scale=1.0)),
        patient_model=tiny_causal_lm(seed=1),
        eval_dataset=letter_preference_dataset(24, seed=1),
    )
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < losses[0]
    assert after["eval_logps/accuracies"] >= 0.9
    assert after["eval_logps/accuracies"] > before["eval_logps/accuracies"]
    assert after["eval_logps/margins"] > before["eval_logps/margins"]
    logged = next(entry for entry in trainer.state.log_history if "loss/subtb" in entry)
    for key in (
        "loss/value",
        "flow/log_v_mean",
        "token_rewards/nonzero_fraction",
        "logps/accuracies",
        "logps/margins",
        "num_tokens",
    ):
        assert key in logged
    implicit_rewards = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")
    if flow_reference == "initial":  # the doctor's log-ratio to its reference ranks chosen over rejected
        assert after["eval_rewards/accuracies"] >= 0.9 and after["eval_rewards/margins"] > 0
        assert after["eval_rewards/chosen"] > 0 > after["eval_rewards/rejected"]
    else:
        assert not any(key in logged for key in implicit_rewards)


def test_saved_doctor_reloads_and_lm_loads_alone(tmp_path):
    patient = tiny_causal_lm(seed=1)
    args = make_args(tmp_path / "out", theta=0.3, guidance_beta=0.7)
    trainer = tiny_trainer(
        args, letter_preference_dataset(8), DoctorModel(tiny_causal_lm(seed=2)), patient_model=patient
    )
    trainer.train()
    trainer.save_model()
    output_dir = tmp_path / "out"
    reloaded = DoctorModel.from_pretrained(output_dir)
    ids = torch.tensor([[1, 40, 41, 42, 2, 50]])
    trained = trainer.model.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, trained(ids).logits, atol=1e-6)
        assert torch.allclose(reloaded(ids).log_values, trained(ids).log_values, atol=1e-6)
        lm_alone = AutoModelForCausalLM.from_pretrained(output_dir)
        assert torch.allclose(lm_alone(ids).logits, trained(ids).logits, atol=1e-6)
    saved_config = json.loads((output_dir / "doctor_config.json").read_text())
    assert saved_config["theta"] == 0.3 and saved_config["beta"] == 0.7
    assert saved_config["positive_system_prompt"] == args.positive_system_prompt
    assert "patient_name_or_path" in saved_config
    card = (output_dir / "README.md").read_text()
    assert "library_name: tfpo-hf" in card and "DoctorLogitsProcessor" in card
    assert not list(output_dir.glob(".*tmp-*")), "no staging folder may be left behind"


def test_resume_from_checkpoint_matches_uninterrupted_run(tmp_path):
    def run(output_dir, resume=None, max_steps=6):
        args = make_args(
            output_dir,
            max_steps=max_steps,
            save_strategy="steps",
            save_steps=3,
            learning_rate=1e-3,
        )
        trainer = tiny_trainer(args, scored_dataset(16), DoctorModel(tiny_causal_lm(seed=2)))
        trainer.train(resume_from_checkpoint=resume)
        return trainer.model

    uninterrupted = run(tmp_path / "a")
    resumed = run(tmp_path / "b", resume=str(tmp_path / "a" / "checkpoint-3"))
    for (name, expected), (_, actual) in zip(uninterrupted.named_parameters(), resumed.named_parameters()):
        assert torch.allclose(expected, actual, atol=1e-6), name


def test_interrupted_save_keeps_previous_files(tmp_path, monkeypatch):
    doctor = random_value_head(DoctorModel(tiny_causal_lm(seed=2)))
    doctor.save_pretrained(tmp_path / "doctor")
    before = (tmp_path / "doctor" / "value_head.safetensors").read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("tfpo_hf.doctor.modeling.save_file", fail)
    with torch.no_grad():
        doctor.value_head.summary.bias.fill_(5.0)
    with pytest.raises(OSError, match="disk full"):
        doctor.save_pretrained(tmp_path / "doctor")
    assert (tmp_path / "doctor" / "value_head.safetensors").read_bytes() == before
    assert not list(tmp_path.glob(".*tmp-*"))


def test_lora_doctor_trains_value_head_in_full_and_round_trips(tmp_path):
    from peft import LoraConfig

    base = saved_and_reloaded(tiny_causal_lm(seed=2), tmp_path / "base")  # the adapter records its base's path
    trainer = tiny_trainer(
        make_args(tmp_path / "out", learning_rate=1e-2),
        scored_dataset(8),
        DoctorModel(base),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or name.startswith("value_head.") for name in trainable)
    assert {"value_head.summary.weight", "value_head.summary.bias"} <= trainable
    trainer.train()
    trainer.save_model()
    reloaded = DoctorModel.from_pretrained(tmp_path / "out")
    ids = torch.tensor([[1, 40, 41, 42]])
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, trainer.model.eval()(ids).logits, atol=1e-6)
        assert torch.allclose(reloaded(ids).log_values, trainer.model(ids).log_values, atol=1e-6)


def test_gradient_accumulation_and_activation_checkpointing_train(tmp_path):
    # transformers renamed gradient_checkpointing to activation_checkpointing during 5.x
    name = (
        "activation_checkpointing"
        if "activation_checkpointing" in TFPOConfig.__dataclass_fields__
        else "gradient_checkpointing"
    )
    args = make_args(tmp_path / "out", gradient_accumulation_steps=2, per_device_train_batch_size=2, **{name: True})
    trainer = tiny_trainer(args, scored_dataset(8), DoctorModel(tiny_causal_lm(seed=2)))
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))


def test_model_given_as_path_gets_a_value_head(tmp_path):
    tiny_causal_lm(seed=2).save_pretrained(tmp_path / "lm")
    trainer = tiny_trainer(make_args(tmp_path / "out"), scored_dataset(4), str(tmp_path / "lm"))
    assert isinstance(trainer.model, DoctorModel)


def test_wrong_length_rewards_name_the_example(tmp_path):
    dataset = scored_dataset(4).map(
        lambda example, index: {
            "chosen_token_rewards": example["chosen_token_rewards"] + ([0.5] if index == 2 else [])
        },
        with_indices=True,
    )
    with pytest.raises(ValueError, match="Example 2: `chosen_ids` has"):
        tiny_trainer(make_args(tmp_path / "out"), dataset)


def test_all_zero_rewards_warn_once_and_still_train(tmp_path):
    with pytest.warns(UserWarning, match="Every token reward") as record:
        trainer = tiny_trainer(make_args(tmp_path / "out", learning_rate=1e-2), scored_dataset(8, zero_rewards=True))
    assert sum("Every token reward" in str(w.message) for w in record) == 1
    head_before = trainer.model.value_head.summary.weight.clone()
    trainer.train()
    assert not torch.equal(head_before, trainer.model.value_head.summary.weight)


def test_missing_patient_and_rewards_says_how_to_provide_either(tmp_path):
    with pytest.raises(ValueError, match="patient_model=.*score_dataset"):
        tiny_trainer(make_args(tmp_path / "out"), letter_preference_dataset(4))


def test_empty_prompt_is_rejected(tmp_path):
    dataset = scored_dataset(3).map(
        lambda example, index: {"prompt_ids": [] if index == 1 else example["prompt_ids"]}, with_indices=True
    )
    with pytest.raises(ValueError, match="Example 1 has an empty prompt"):
        tiny_trainer(make_args(tmp_path / "out"), dataset)


def test_bf16_mixed_precision_trains_with_finite_losses(tmp_path):
    trainer = tiny_trainer(
        make_args(tmp_path / "out", bf16=True, learning_rate=1e-3),
        scored_dataset(8),
        DoctorModel(tiny_causal_lm(seed=2, logit_scale=1.0)),
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss/subtb" in entry]
    assert logged and all(
        torch.isfinite(torch.tensor([e["loss"], e["loss/subtb"], e["loss/value"]])).all() for e in logged
    )


def test_value_head_learning_rate_gets_its_own_optimizer_group(tmp_path):
    trainer = tiny_trainer(
        make_args(tmp_path / "out", learning_rate=1e-4, value_head_learning_rate=3e-2),
        scored_dataset(8),
        DoctorModel(tiny_causal_lm(seed=2)),
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=2)
    head = {id(p) for p in trainer.model.value_head.parameters()}
    groups = trainer.optimizer.param_groups
    head_groups = [g for g in groups if any(id(p) in head for p in g["params"])]
    assert len(head_groups) == 1 and head_groups[0]["lr"] == pytest.approx(3e-2)
    assert {id(p) for p in head_groups[0]["params"]} == head
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in trainer.model.parameters() if p.requires_grad)
    assert all(g["lr"] == pytest.approx(1e-4) for g in groups if g is not head_groups[0])
