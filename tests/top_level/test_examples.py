"""Smoke tests of examples/: every script runs end to end on tiny local models and files (no network), and the
shipped accelerate configs parse as accelerate reads them."""

import importlib.util
import json
import sys

import pytest

from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer

from ..helpers import REPO_ROOT
from ..helpers.subprocesses import free_port, run_checked
from ..helpers.tiny_data import assistant, user


EXAMPLES = REPO_ROOT / "examples"
FAST_TRAINING = [
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "4",
    "--report_to",
    "none",
    "--use_cpu",
    "--save_strategy",
    "no",
    "--disable_tqdm",
    "true",
]


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def run_example(name: str, argv: list[str]):
    """Parse `argv` with the script's own TrlParser and call its `main`, in this process."""
    from trl import TrlParser

    module = load_example(name)
    if name == "train_doctor":
        return module.main(*module.make_parser().parse_args_and_config(argv))
    dataclass_type = getattr(
        module,
        {
            "guided_generate": "GuidedGenerateArguments",
            "multi_objective": "MultiObjectiveArguments",
            "weak_to_strong": "WeakToStrongArguments",
        }[name],
    )
    (arguments,) = TrlParser((dataclass_type,)).parse_args_and_config(argv)
    return module.main(arguments)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny patient saved with its tokenizer, and a tiny conversational preference dataset as jsonl."""
    root = tmp_path_factory.mktemp("examples")
    tiny_causal_lm(seed=1).save_pretrained(root / "patient")
    tiny_tokenizer().save_pretrained(root / "patient")
    rows = [
        {
            "prompt": user(f"Tell me about day {i}."),
            "chosen": assistant("A lovely, warm and bright day."),
            "rejected": assistant("Awful. Grey."),
        }
        for i in range(8)
    ]
    (root / "prefs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root


@pytest.fixture(scope="module")
def lora_doctor(workdir):
    """train_doctor.py with its defaults: a full-depth copy of the patient trained with LoRA (rank 4 here)."""
    output = workdir / "doctor-lora"
    run_example(
        "train_doctor",
        [
            "--dataset",
            str(workdir / "prefs.jsonl"),
            "--patient",
            str(workdir / "patient"),
            "--lora_r",
            "4",
            "--output_dir",
            str(output),
        ]
        + FAST_TRAINING,
    )
    return output


@pytest.fixture(scope="module")
def truncated_doctor(workdir):
    """train_doctor.py run as a script from a YAML `--config`: the patient's first layer, trained in full (the
    default for a truncated copy: a LoRA adapter on it could not be reloaded)."""
    output = workdir / "doctor-truncated"
    config = workdir / "train.yaml"
    config.write_text(
        f"dataset: {workdir / 'prefs.jsonl'}\npatient: {workdir / 'patient'}\ndoctor_layers: 1\n"
        f"max_steps: 2\nper_device_train_batch_size: 4\nreport_to: none\nuse_cpu: true\n"
        f"save_strategy: 'no'\n"
    )
    result = run_checked(
        [sys.executable, str(EXAMPLES / "train_doctor.py"), "--config", str(config), "--output_dir", str(output)],
        cwd=workdir,
        timeout=120,
    )
    assert f"Doctor saved to {output}" in result.stdout
    return output


def test_train_doctor_saves_a_lora_doctor(lora_doctor, workdir):
    from tfpo_hf import DoctorModel
    from tfpo_hf.training.config import DEFAULT_GUIDANCE_BETA

    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "value_head.safetensors",
        "doctor_config.json",
        "README.md",
        "tokenizer.json",
    ):
        assert (lora_doctor / name).is_file(), name
    saved = json.loads((lora_doctor / "doctor_config.json").read_text())
    assert saved["patient_name_or_path"] == str(workdir / "patient") and saved["beta"] == DEFAULT_GUIDANCE_BETA
    assert saved["guidance"] == "ratio" and saved["guidance_reference"] == "patient"  # a LoRA copy of the patient
    reloaded = DoctorModel.from_pretrained(lora_doctor)
    assert hasattr(reloaded.pretrained_model, "peft_config")


def test_train_doctor_yaml_config_truncated_doctor_is_a_plain_checkpoint(truncated_doctor):
    assert not (truncated_doctor / "adapter_config.json").exists()  # trained in full: a standalone causal LM
    config = json.loads((truncated_doctor / "config.json").read_text())
    assert config["num_hidden_layers"] == 1
    assert (truncated_doctor / "value_head.safetensors").is_file()


def two_doctors(workdir, lora_doctor, truncated_doctor) -> list[str]:
    """The flags that give an example the tiny patient and both trained doctors."""
    return ["--patient", str(workdir / "patient"), "--doctor", str(lora_doctor), str(truncated_doctor)]


def test_guided_generate_two_doctors_batched(workdir, lora_doctor, truncated_doctor, capsys):
    argv = two_doctors(workdir, lora_doctor, truncated_doctor) + ["--beta", "0.5", "1.0", "--max_new_tokens", "4"]
    argv += ["--prompt", "hi", "a much longer prompt here", "--do_sample", "--temperature", "0.7", "--top_p", "0.9"]
    results = run_example("guided_generate", argv)
    assert [prompt for prompt, _, _ in results] == ["hi", "a much longer prompt here"]
    printed = capsys.readouterr().out
    assert "unguided" in printed and "guided (alpha=1, beta=[0.5, 1.0])" in printed


def test_multi_objective_writes_grid_json_and_plot(workdir, lora_doctor, truncated_doctor, tmp_path):
    argv = two_doctors(workdir, lora_doctor, truncated_doctor) + ["--betas", "0", "1", "--max_new_tokens", "3"]
    records = run_example("multi_objective", argv + ["--prompt", "hi", "hello", "--output_dir", str(tmp_path)])
    assert len(records) == 4
    payload = json.loads((tmp_path / "pareto.json").read_text())
    assert [(r["beta_1"], r["beta_2"]) for r in payload["grid"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert payload["pareto_front"] and all(len(r["texts"]) == 2 for r in payload["grid"])
    assert (tmp_path / "pareto.png").stat().st_size > 0


def test_multi_objective_pareto_front():
    module = load_example("multi_objective")
    assert module.pareto_front([(0, 1), (1, 0), (0.5, 0.5), (0.2, 0.2)]) == [0, 2, 1]
    assert module.keyword_judge(["safe", "sorry"])("Sorry, that is not SAFE.") == 1.0
    assert module.brevity_judge("") == 1.0


@pytest.mark.parametrize("doctor", ["truncated copy", "saved path"])
def test_weak_to_strong(workdir, truncated_doctor, doctor, capsys):
    flags = ["--doctor_layers", "1"] if doctor == "truncated copy" else ["--doctor", str(truncated_doctor)]
    report = run_example(
        "weak_to_strong",
        [
            "--patient",
            str(workdir / "patient"),
            "--prompt",
            "hi",
            "hello",
            "--max_new_tokens",
            "4",
            *flags,
        ],
    )
    assert len(report["guided"]["texts"]) == 2 and report["guided"]["tokens_per_second"] > 0
    assert "tokens/s" in capsys.readouterr().out


def test_train_doctor_under_accelerate_launch_multi_cpu(workdir, tmp_path):
    """The command of train_doctor.py's docstring: two CPU processes with examples/accelerate/multi_cpu.yaml."""
    pytest.importorskip("accelerate")
    result = run_checked(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(EXAMPLES / "accelerate" / "multi_cpu.yaml"),
            "--main_process_port",
            str(free_port()),
            str(EXAMPLES / "train_doctor.py"),
            "--dataset",
            str(workdir / "prefs.jsonl"),
            "--patient",
            str(workdir / "patient"),
            "--doctor_layers",
            "1",
            "--output_dir",
            str(tmp_path / "doctor"),
            *FAST_TRAINING,
        ],
        cwd=tmp_path,
        timeout=180,
    )
    assert result.stdout.count("Doctor saved to") == 1  # printed by the main process only
    assert (tmp_path / "doctor" / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "name,distributed_type",
    [
        ("ddp", "MULTI_GPU"),
        ("fsdp", "FSDP"),
        ("deepspeed_zero2", "DEEPSPEED"),
        ("multi_cpu", "MULTI_GPU"),
    ],
)
def test_accelerate_configs_parse(name, distributed_type):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    # ClusterConfig.from_yaml_file raises on keys accelerate does not know.
    config = load_config_from_file(str(EXAMPLES / "accelerate" / f"{name}.yaml"))
    assert isinstance(config, ClusterConfig)
    assert str(config.distributed_type).split(".")[-1] == distributed_type
    assert config.num_machines == 1 and config.num_processes >= 2
    if name == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    if name == "deepspeed_zero2":
        assert config.deepspeed_config["zero_stage"] == 2
