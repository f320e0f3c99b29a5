"""The Hub round trip without network: what `push_to_hub` would upload loads back into identical generations."""

import shutil

import torch
from transformers import LogitsProcessorList

from tfpo_hf import DoctorLogitsProcessor, DoctorModel, TFPOTrainer
from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

from ..helpers.tiny_data import scored_dataset
from ..helpers.training import make_args


class FakeHubApi:
    """Stands in for `huggingface_hub.HfApi`: `upload_folder` copies the folder into `hub_dir/repo_id`."""

    def __init__(self, hub_dir):
        self.hub_dir = hub_dir

    def create_repo(self, repo_id, token=None, private=None, exist_ok=False, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, folder_path, commit_message=None, ignore_patterns=None, **kwargs):
        shutil.copytree(
            folder_path,
            self.hub_dir / repo_id,
            ignore=shutil.ignore_patterns(*(ignore_patterns or [])),
            dirs_exist_ok=True,
        )
        return f"https://hub/{repo_id}/commit/1"


def guided_inputs(tokenizer):
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": "hello"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )


def guided_tokens(doctor, patient, tokenizer):
    processor = DoctorLogitsProcessor(doctor, betas=1.0, tokenizer=tokenizer)
    return patient.generate(
        **guided_inputs(tokenizer),
        logits_processor=LogitsProcessorList([processor]),
        max_new_tokens=8,
        do_sample=False,
    )


def test_trainer_push_to_hub_uploads_a_loadable_doctor_with_card_and_tokenizer(tmp_path, monkeypatch):
    hub = FakeHubApi(tmp_path / "hub")
    monkeypatch.setattr("transformers.trainer.hf_api", lambda: hub)
    tokenizer, patient = tiny_tokenizer(), tiny_causal_lm(seed=1)
    args = make_args(tmp_path / "out", learning_rate=1e-2, hub_model_id="user/doctor")
    tiny_causal_lm(seed=2).save_pretrained(tmp_path / "start")  # the reference the doctor records and decodes with
    trainer = TFPOTrainer(
        DoctorModel.from_pretrained(tmp_path / "start"),
        args=args,
        train_dataset=scored_dataset(8),
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.push_to_hub(dataset_name="user/prefs")
    repo = tmp_path / "hub" / "user" / "doctor"
    files = {path.name for path in repo.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "value_head.safetensors",
        "doctor_config.json",
        "tokenizer.json",
        "README.md",
    } <= files
    card = (repo / "README.md").read_text()
    for line in ("library_name: tfpo-hf", "- tfpo", "datasets:", "- user/prefs", "DoctorLogitsProcessor"):
        assert line in card, line
    trained = trainer.model.eval()
    assert torch.equal(guided_tokens(str(repo), patient, tokenizer), guided_tokens(trained, patient, tokenizer))
    unguided = patient.generate(**guided_inputs(tokenizer), max_new_tokens=8, do_sample=False)
    assert not torch.equal(guided_tokens(str(repo), patient, tokenizer), unguided)


def test_doctor_push_to_hub_includes_the_tokenizer(tmp_path, monkeypatch):
    hub = FakeHubApi(tmp_path / "hub")
    monkeypatch.setattr("huggingface_hub.HfApi", lambda token=None: hub)
    tokenizer, patient = tiny_tokenizer(), tiny_causal_lm(seed=1)
    doctor = DoctorModel.from_patient(tiny_causal_lm(seed=3, num_hidden_layers=2), 1)
    doctor.push_to_hub("user/small-doctor", tokenizer=tokenizer)
    repo = tmp_path / "hub" / "user" / "small-doctor"
    assert (repo / "tokenizer.json").exists() and (repo / "value_head.safetensors").exists()
    assert torch.equal(guided_tokens(str(repo), patient, tokenizer), guided_tokens(doctor, patient, tokenizer))
