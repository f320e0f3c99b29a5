"""The `tfpo-hf` CLI end to end on tiny local models and files (no network)."""

import json

import pytest
from datasets import load_from_disk

from tfpo_hf.cli import main
from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

from ..helpers.tiny_data import letter_preference_dataset


@pytest.fixture
def tiny_patient_dir(tmp_path):
    path = tmp_path / "patient"
    tiny_causal_lm(seed=1).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return str(path)


def test_rewards_train_generate_evaluate(tmp_path, tiny_patient_dir, capsys):
    dataset_file = tmp_path / "prefs.jsonl"
    letter_preference_dataset(8).to_json(str(dataset_file))

    main(
        [
            "rewards",
            "--dataset",
            str(dataset_file),
            "--patient",
            tiny_patient_dir,
            "--output",
            str(tmp_path / "scored"),
            "--theta",
            "0.2",
        ]
    )
    scored = load_from_disk(str(tmp_path / "scored"))
    assert len(scored) == 8 and all(
        len(r) == len(i) for r, i in zip(scored["chosen_token_rewards"], scored["chosen_ids"])
    )
    assert "Non-zero rewards:" in capsys.readouterr().out

    config = tmp_path / "train.yaml"
    config.write_text(
        f"dataset: {tmp_path / 'scored'}\npatient: {tiny_patient_dir}\nmax_steps: 2\n"
        "per_device_train_batch_size: 4\nreport_to: none\nuse_cpu: true\nsave_strategy: 'no'\n"
    )
    main(["train", "--config", str(config), "--output_dir", str(tmp_path / "doctor")])
    saved = json.loads((tmp_path / "doctor" / "doctor_config.json").read_text())
    assert saved["theta"] == 0.5 and (tmp_path / "doctor" / "value_head.safetensors").exists()
    assert (tmp_path / "doctor" / "adapter_config.json").exists(), "the default doctor is a LoRA copy of the patient"
    with pytest.raises(ValueError, match="truncated copy of the patient"):
        main(
            [
                "train",
                "--config",
                str(config),
                "--doctor_layers",
                "1",
                "--use_peft",
                "true",
                "--output_dir",
                str(tmp_path / "bad"),
            ]
        )

    main(
        [
            "generate",
            "--patient",
            tiny_patient_dir,
            "--doctor",
            str(tmp_path / "doctor"),
            "--prompt",
            "hi",
            "--max_new_tokens",
            "4",
        ]
    )
    assert ">>> hi" in capsys.readouterr().out

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\nwhy\n")
    main(
        [
            "evaluate",
            "--patient",
            tiny_patient_dir,
            "--doctor",
            str(tmp_path / "doctor"),
            "--beta",
            "0.5",
            "--prompts",
            str(prompts),
            "--max_new_tokens",
            "4",
            "--best_of_n",
            "2",
            "--output_dir",
            str(tmp_path / "eval"),
        ]
    )
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert [m["name"] for m in results["methods"]] == [
        "patient (greedy)",
        "patient (sampling)",
        "doctor beta=0.5",
        "best-of-2 (judge)",
    ]
    assert (tmp_path / "eval" / "reward_vs_diversity.png").exists()


def test_help_lists_every_subcommand(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    for name in ("rewards", "train", "generate", "evaluate", "demo"):
        assert name in out


@pytest.mark.parametrize(
    "flags, whole_copy, lora",
    [
        ([], True, True),
        ([], False, False),
        (["--use_peft", "false"], True, False),
        (["--use_peft", "true"], False, True),
    ],
)
def test_lora_rule_for_doctors(flags, whole_copy, lora):
    """LoRA by default exactly on a whole copy of the patient; `--use_peft` overrides."""
    from tfpo_hf.scripts.arguments import resolve_peft_config
    from tfpo_hf.scripts.train import make_parser

    _, _, model_args = make_parser().parse_args_and_config(["--dataset", "x.jsonl", "--output_dir", "o"] + flags)
    peft_config = resolve_peft_config(model_args, whole_copy=whole_copy)
    assert (peft_config is not None) == lora
    if lora:
        assert peft_config.r == 16 and peft_config.lora_alpha == 32 and peft_config.target_modules == "all-linear"


def test_cli_and_demo_share_the_library_lora_defaults():
    """`tfpo-hf train`'s default LoRA is the library's, which the demo trains with (`default_peft_config`)."""
    from tfpo_hf.scripts.arguments import DoctorModelConfig, resolve_peft_config
    from tfpo_hf.training.doctor_setup import default_lora_config, default_peft_config

    assert resolve_peft_config(DoctorModelConfig(), whole_copy=True) == default_lora_config()
    assert default_peft_config(whole_copy=True) == default_lora_config()
    assert default_peft_config(whole_copy=False) is None
