"""The demo's trained methods: the doctor families (LLMdoctor, the paper-literal ablation, the GenARM-style
baseline), each trained, saved and reloaded merged for decoding, and the DPO baseline trained with TRL."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from datasets import Dataset
from transformers import PreTrainedModel

from ..doctor.modeling import DoctorModel
from ..training.baselines import TrajectoryBTTrainer
from ..training.config import TFPOConfig
from ..training.doctor_setup import (
    DEFAULT_LORA_ALPHA,
    DEFAULT_LORA_DROPOUT,
    DEFAULT_LORA_RANK,
    DEFAULT_LORA_TARGET_MODULES,
    default_peft_config,
    doctor_from_patient,
)
from ..training.trainer import TFPOTrainer
from ..utils.adapters import has_adapter
from ..utils.embedded_patient import DTYPES
from .prompts import NEGATIVE_FACE, POSITIVE_FACE


if TYPE_CHECKING:
    from .arguments import DemoArguments
    from .context import DemoContext

LITERAL, LITERAL_BETA = "LLMdoctor, literal flow", 1.0  # the paper-literal ablation and its (mix) beta
GENARM = "GenARM-style"
DPO = "DPO (TRL, LoRA)"


@dataclass
class DoctorFamily:
    """A doctor family of the demo: how its rows are named, the folder it is saved in, its trainer and its
    `TFPOConfig` overrides."""

    name: str
    folder: str
    trainer_class: type
    overrides: dict = field(default_factory=dict)


def doctor_families(args: DemoArguments) -> list[DoctorFamily]:
    """LLMdoctor, then the paper-literal ablation and the GenARM-style baseline when asked for."""
    families = [DoctorFamily("LLMdoctor", "doctor", TFPOTrainer)]
    if args.ablation:
        families.append(DoctorFamily(LITERAL, "literal_doctor", TFPOTrainer, {"flow_reference": "none"}))
    if args.baselines:
        families.append(DoctorFamily(GENARM, "genarm_doctor", TrajectoryBTTrainer))
    return families


def make_doctor(patient: PreTrainedModel, args: DemoArguments) -> tuple[DoctorModel, object | None]:
    """The doctor and its PEFT config, as `tfpo-hf train` makes them with its defaults: LoRA on a whole copy of the
    patient, a truncated copy (`doctor_layers > 0`) trained in full; float32 either way."""
    return doctor_from_patient(patient, args.doctor_layers), default_peft_config(whole_copy=args.doctor_layers == 0)


def shared_training_arguments(args: DemoArguments, output_dir: Path) -> dict:
    """The `TrainingArguments` every method of the demo trains with (doctors and DPO alike: same learning rate,
    epochs, batch size and seed; CPU, no checkpoints), writing its runs under `output_dir`."""
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


def training_config(args: DemoArguments, output_dir: Path, **overrides) -> TFPOConfig:
    """The `TFPOConfig` of every doctor family, with a family's `overrides` on top."""
    values = dict(
        **shared_training_arguments(args, output_dir),
        theta=args.theta,
        lambda_value=args.lambda_value,
        positive_system_prompt=POSITIVE_FACE,
        negative_system_prompt=NEGATIVE_FACE,
        guidance_beta=args.guidance_beta,
        value_head_learning_rate=args.value_head_learning_rate,
    )
    return TFPOConfig(**{**values, **overrides})


def train_doctor(context: DemoContext, family: DoctorFamily, scored: Dataset) -> DoctorModel:
    """Train one doctor family on the scored pairs, save it under `output_dir/family.folder`, record its log history
    and time in `context`; returns the saved doctor reloaded in the decoding dtype (with its `doctor_config`, so the
    processor reads its defaults)."""
    args, output_dir = context.args, context.output_dir
    with context.timed(f"{family.name} training"):
        doctor, peft_config = make_doctor(context.patient, args)
        trainer = family.trainer_class(
            doctor,
            args=training_config(args, output_dir / "runs" / family.folder, **family.overrides),
            train_dataset=scored,
            processing_class=context.tokenizer,
            peft_config=peft_config,
        )
        trainer.train()
        trainer.save_model(str(output_dir / family.folder))
        context.training_logs[family.name] = trainer.state.log_history
        return load_for_decoding(output_dir / family.folder, DTYPES[args.patient_dtype])


def load_for_decoding(path: Path, dtype) -> DoctorModel:
    """The saved doctor in the decoding dtype, a LoRA adapter merged into its weights: on a CPU in bfloat16 the
    unmerged low-rank products cost more than the rest of the doctor (docs/results.md), so the demo decodes merged
    doctors through `DoctorLogitsProcessor` (the recorded guidance still applies: `doctor_config` is kept)."""
    doctor = DoctorModel.from_pretrained(path, dtype=dtype)
    if has_adapter(doctor.pretrained_model):
        doctor.pretrained_model = doctor.pretrained_model.merge_and_unload()
    return doctor.eval()


def train_dpo(context: DemoContext, pairs: Dataset) -> PreTrainedModel:
    """TRL's DPOTrainer with the doctors' LoRA settings on a float32 copy of the patient, with their learning rate
    and epochs; records its log history and time in `context` and returns the merged model in the patient's dtype."""
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(
        **shared_training_arguments(context.args, context.output_dir / "runs" / "dpo"),
        bf16=False,
        gradient_checkpointing=False,
        precompute_ref_log_probs=True,  # as the TFPO doctors do: one reference pass, not one per epoch
    )
    lora = LoraConfig(  # no task type, unlike `default_lora_config()`: TRL wraps the model as it always has here
        r=DEFAULT_LORA_RANK,
        lora_alpha=DEFAULT_LORA_ALPHA,
        target_modules=DEFAULT_LORA_TARGET_MODULES,
        lora_dropout=DEFAULT_LORA_DROPOUT,
    )
    with context.timed(f"{DPO} training"):
        trainer = DPOTrainer(
            copy.deepcopy(context.patient).float(),
            args=config,
            train_dataset=pairs.select_columns(["prompt", "chosen", "rejected"]),
            processing_class=context.tokenizer,
            peft_config=lora,
        )
        trainer.train()
        context.training_logs[DPO] = trainer.state.log_history
        return trainer.model.merge_and_unload().to(context.patient.dtype).eval()


def train_all(
    context: DemoContext, pairs: Dataset, scored: Dataset
) -> tuple[dict[str, DoctorModel], PreTrainedModel | None]:
    """Train every doctor family on the scored pairs, then DPO on the pairs when baselines are asked for; returns
    the doctors by family name and the DPO model (None without baselines)."""
    doctors = {}
    for family in doctor_families(context.args):
        doctors[family.name] = train_doctor(context, family, scored)
        print(f"[demo] {family.name} trained ({context.timings[f'{family.name} training']:.0f} s)")
    dpo_model = train_dpo(context, pairs) if context.args.baselines else None
    return doctors, dpo_model
