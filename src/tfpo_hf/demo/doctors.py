"""The demo's trained methods: the doctor families (LLMdoctor, the paper-literal ablation, the GenARM-style
baseline), each trained, saved and reloaded merged for decoding, and the DPO baseline trained with TRL."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from datasets import Dataset
from transformers import PreTrainedModel

from ..doctor.modeling import DoctorModel
from ..scripts.arguments import DoctorModelConfig, resolve_peft_config
from ..training.baselines import TrajectoryBTTrainer
from ..training.config import TFPOConfig
from ..training.doctor_setup import doctor_from_patient
from ..training.trainer import TFPOTrainer
from ..utils.adapters import has_adapter
from ..utils.embedded_patient import DTYPES
from .prompts import NEGATIVE_FACE, POSITIVE_FACE


if TYPE_CHECKING:
    from .pipeline import DemoArguments

LITERAL, LITERAL_BETA = "LLMdoctor, literal flow", 1.0  # the paper-literal ablation and its (mix) beta
GENARM = "GenARM-style"
DPO = "DPO (TRL, LoRA)"


@dataclass
class DoctorRun:
    """A doctor family of the demo: its trainer, its config overrides and how its row is named."""

    name: str
    folder: str
    trainer_class: type
    overrides: dict = field(default_factory=dict)


def doctor_runs(args: DemoArguments) -> list[DoctorRun]:
    """LLMdoctor, then the paper-literal ablation and the GenARM-style baseline when asked for."""
    runs = [DoctorRun("LLMdoctor", "doctor", TFPOTrainer)]
    if args.ablation:
        runs.append(DoctorRun(LITERAL, "literal_doctor", TFPOTrainer, {"flow_reference": "none"}))
    if args.baselines:
        runs.append(DoctorRun(GENARM, "genarm_doctor", TrajectoryBTTrainer))
    return runs


def make_doctor(patient: PreTrainedModel, args: DemoArguments) -> tuple[DoctorModel, object | None]:
    """The doctor and its PEFT config, as `tfpo-hf train` makes them with its defaults: LoRA on a whole copy of the
    patient, a truncated copy (`doctor_layers > 0`) trained in full; float32 either way."""
    peft_config = resolve_peft_config(DoctorModelConfig(), whole_copy=args.doctor_layers == 0)
    return doctor_from_patient(patient, args.doctor_layers), peft_config


def shared_training_arguments(output_dir: Path, args: DemoArguments) -> dict:
    """The `TrainingArguments` every method of the demo trains with (doctors and DPO alike: same learning rate,
    epochs, batch size and seed; CPU, no checkpoints)."""
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=8,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=args.seed,
        disable_tqdm=True,
        max_length=256,
    )


def training_config(output_dir: Path, args: DemoArguments, **overrides) -> TFPOConfig:
    """The `TFPOConfig` of every doctor family, with a family's `overrides` on top."""
    values = dict(
        **shared_training_arguments(output_dir, args),
        theta=args.theta,
        lambda_value=args.lambda_value,
        positive_system_prompt=POSITIVE_FACE,
        negative_system_prompt=NEGATIVE_FACE,
        guidance_beta=args.beta,
        value_head_learning_rate=args.value_head_learning_rate,
    )
    return TFPOConfig(**{**values, **overrides})


def train_doctor(
    run: DoctorRun,
    patient,
    scored: Dataset,
    tokenizer,
    args: DemoArguments,
    output_dir: Path,
    training_logs: dict,
    timings: dict,
) -> DoctorModel:
    """Train one doctor family, save it under `output_dir/run.folder`, record its log history and time; returns the
    saved doctor reloaded in the decoding dtype (with its `doctor_config`, so the processor reads its defaults)."""
    clock = time.perf_counter()
    doctor, peft_config = make_doctor(patient, args)
    trainer = run.trainer_class(
        doctor,
        args=training_config(output_dir / "runs" / run.folder, args, **run.overrides),
        train_dataset=scored,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.train()
    trainer.save_model(str(output_dir / run.folder))
    training_logs[run.name] = trainer.state.log_history
    timings[f"{run.name} training"] = time.perf_counter() - clock
    return load_for_decoding(output_dir / run.folder, DTYPES[args.dtype])


def load_for_decoding(path: Path, dtype) -> DoctorModel:
    """The saved doctor in the decoding dtype, a LoRA adapter merged into its weights: on a CPU in bfloat16 the
    unmerged low-rank products cost more than the rest of the doctor (docs/results.md), so the demo decodes merged
    doctors through `DoctorLogitsProcessor` (the recorded guidance still applies: `doctor_config` is kept)."""
    doctor = DoctorModel.from_pretrained(path, dtype=dtype)
    if has_adapter(doctor.pretrained_model):
        doctor.pretrained_model = doctor.pretrained_model.merge_and_unload()
    return doctor.eval()


def train_dpo(patient: PreTrainedModel, tokenizer, pairs: Dataset, output_dir: Path, args: DemoArguments):
    """TRL's DPOTrainer with LoRA on a float32 copy of the patient, with the doctors' learning rate and epochs;
    returns the merged model and the log history."""
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(
        **shared_training_arguments(output_dir, args),
        bf16=False,
        gradient_checkpointing=False,
        precompute_ref_log_probs=True,  # as the TFPO doctors do: one reference pass, not one per epoch
    )
    trainer = DPOTrainer(
        copy.deepcopy(patient).float(),
        args=config,
        train_dataset=pairs.select_columns(["prompt", "chosen", "rejected"]),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"),
    )
    trainer.train()
    return trainer.model.merge_and_unload().to(patient.dtype).eval(), trainer.state.log_history


def train_all(
    patient, tokenizer, pairs: Dataset, scored: Dataset, args: DemoArguments, output_dir: Path, timings: dict
) -> tuple[dict[str, DoctorModel], PreTrainedModel | None, dict[str, list]]:
    """Train every doctor family on the scored pairs, then DPO on the pairs when baselines are asked for; returns
    the doctors by family, the DPO model (None without baselines) and every log history by method name."""
    training_logs: dict[str, list] = {}
    doctors = {}
    for run in doctor_runs(args):
        doctors[run.name] = train_doctor(run, patient, scored, tokenizer, args, output_dir, training_logs, timings)
        print(f"[demo] {run.name} trained ({timings[f'{run.name} training']:.0f} s)")
    dpo_model = None
    if args.baselines:
        clock = time.perf_counter()
        dpo_model, training_logs[DPO] = train_dpo(patient, tokenizer, pairs, output_dir / "runs" / "dpo", args)
        timings[f"{DPO} training"] = time.perf_counter() - clock
    return doctors, dpo_model, training_logs
