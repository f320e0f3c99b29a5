"""The demo's trained methods: the doctor families (LLMdoctor, the paper-literal ablation, the GenARM-style
baseline), each trained, saved and reloaded merged for decoding, and the DPO baseline trained with TRL."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from datasets import Dataset
from transformers import PreTrainedModel, set_seed

from ..cross_tokenizer.reward_transfer import retokenize_for_doctor
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
from ..utils.constants import CONFIG_NAME, DOCTOR_CONFIG_NAME
from ..utils.embedded_patient import DTYPES
from ..utils.files import staged_folder
from .arguments import DPO_BETA


if TYPE_CHECKING:
    from .arguments import DemoArguments
    from .context import DemoContext

LITERAL, LITERAL_BETA = "LLMdoctor, literal flow", 1.0  # the paper-literal ablation and its (mix) beta
GENARM = "GenARM-style"
DPO = "DPO (TRL, LoRA)"
WEAK_DPO = "DPO on the doctors' base (TRL, LoRA)"  # weak-to-strong runs: the weak model aligned
CROSS_FAMILY = "LLMdoctor, doctor of another family"  # --cross_family_doctor: another tokenizer than the patient's


@dataclass
class DoctorFamily:
    """A doctor family of the demo: how its rows are named, the folder it is saved in, its trainer and its
    `TFPOConfig` overrides."""

    name: str
    folder: str
    trainer_class: type
    overrides: dict = field(default_factory=dict)
    other_family: bool = False  # starts from `--cross_family_doctor`, with its own tokenizer


def doctor_families(args: DemoArguments) -> list[DoctorFamily]:
    """LLMdoctor, then the doctor of another family, the paper-literal ablation and the GenARM-style baseline when
    asked for."""
    families = [DoctorFamily("LLMdoctor", "doctor", TFPOTrainer)]
    if args.cross_family_doctor is not None:
        families.append(DoctorFamily(CROSS_FAMILY, "cross_family_doctor", TFPOTrainer, other_family=True))
    if args.ablation:
        families.append(DoctorFamily(LITERAL, "literal_doctor", TFPOTrainer, {"flow_reference": "none"}))
    if args.baselines:
        families.append(DoctorFamily(GENARM, "genarm_doctor", TrajectoryBTTrainer))
    return families


def make_doctor(context: DemoContext, family: DoctorFamily) -> tuple[DoctorModel, object | None]:
    """The doctor and its PEFT config, as `tfpo-hf train` makes them with its defaults: LoRA on a whole copy of the
    patient, of the doctors' base in a weak-to-strong run, or of the base of another family; a truncated copy of the
    patient (`doctor_layers > 0`) trained in full; float32 either way."""
    if family.other_family:
        return DoctorModel(copy.deepcopy(context.cross_family_base).float()), default_peft_config(whole_copy=True)
    if context.doctor_base is not None:
        return DoctorModel(copy.deepcopy(context.doctor_base).float()), default_peft_config(whole_copy=True)
    layers = context.args.doctor_layers
    return doctor_from_patient(context.patient, layers), default_peft_config(whole_copy=layers == 0)


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
        positive_system_prompt=args.demo_task.positive_face,
        negative_system_prompt=args.demo_task.negative_face,
        guidance_beta=args.guidance_beta,  # replaced by the chosen one with --choose_guidance_beta
        value_head_learning_rate=args.value_head_learning_rate,
    )
    return TFPOConfig(**{**values, **overrides})


def train_doctor(context: DemoContext, family: DoctorFamily, scored: Dataset) -> Path:
    """Train one doctor family on the scored pairs, save it under `output_dir/family.folder` and record its log
    history and time in `context`; returns the folder (`load_for_decoding` loads it). A doctor that a stopped run
    already saved there is not trained again."""
    args, output_dir = context.args, context.output_dir
    folder = output_dir / family.folder
    if context.resumes(f"{family.name} training") and (folder / DOCTOR_CONFIG_NAME).is_file():
        return folder
    with context.timed(f"{family.name} training"):
        set_seed(args.seed)  # its initial weights (LoRA, value head) must not depend on what ran before it
        doctor, peft_config = make_doctor(context, family)
        config = training_config(args, output_dir / "runs" / family.folder, **family.overrides)
        tokenizer = context.cross_family_tokenizer if family.other_family else context.tokenizer
        if family.other_family:  # the patient's rewards, moved onto the doctor's tokens
            scored = retokenize_for_doctor(scored, context.tokenizer, tokenizer, config.to_token_reward_config())
        trainer = family.trainer_class(
            doctor,
            args=config,
            train_dataset=scored,
            processing_class=tokenizer,
            peft_config=peft_config,
            patient_model=context.patient,  # recorded in doctor_config.json (the pairs are scored already)
            patient_processing_class=context.tokenizer,
        )
        trainer.train()
        trainer.save_model(str(folder))
        context.record_training_log(family.name, trainer.state.log_history)
    return folder


def load_for_decoding(context: DemoContext, path: Path, other_family: bool = False) -> DoctorModel:
    """The saved doctor in the decoding dtype. A copy of the patient's LoRA adapter is merged into its weights: on a
    CPU in bfloat16 the unmerged low-rank products cost more than the rest of the doctor (docs/results.md), and its
    reference is the patient. A weak-to-strong doctor, or one of another family, keeps its adapter: its reference is
    its own base, whose rows share the adapter's forward (the recorded guidance applies either way: `doctor_config`
    is kept)."""
    doctor = DoctorModel.from_pretrained(path, dtype=DTYPES[context.args.patient_dtype])
    if has_adapter(doctor.pretrained_model) and not (context.args.weak_to_strong or other_family):
        doctor.pretrained_model = doctor.pretrained_model.merge_and_unload()
    return doctor.eval()


def train_dpo(
    context: DemoContext, pairs: Dataset, model: PreTrainedModel, name: str, folder: str, beta: float = DPO_BETA
) -> Path:
    """TRL's DPOTrainer with the doctors' LoRA settings on a float32 copy of `model`, with their learning rate and
    epochs, at DPO strength `beta`; records its log history and time in `context` under `name`, saves the merged
    model under `output_dir/folder` (atomically) and returns that folder; a resumed run finds it there."""
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    path = context.output_dir / folder
    if context.resumes(f"{name} training") and (path / CONFIG_NAME).is_file():
        return path
    config = DPOConfig(
        **shared_training_arguments(context.args, context.output_dir / "runs" / folder),
        beta=beta,
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
    with context.timed(f"{name} training"):
        set_seed(context.args.seed)  # as the doctors: its LoRA's initial weights independent of the steps before
        trainer = DPOTrainer(
            copy.deepcopy(model).float(),
            args=config,
            train_dataset=pairs.select_columns(["prompt", "chosen", "rejected"]),
            processing_class=context.tokenizer,
            peft_config=lora,
        )
        trainer.train()
        context.record_training_log(name, trainer.state.log_history)
        with staged_folder(path) as staging:
            trainer.model.merge_and_unload().save_pretrained(str(staging))
    return path


def train_all(context: DemoContext, pairs: Dataset, scored: Dataset) -> tuple[dict[str, Path], dict[float, dict]]:
    """Train every doctor family on the scored pairs, then, when baselines are asked for, DPO on the pairs: on the
    patient, and in a weak-to-strong run on the doctors' base too, at TRL's strength and at each of
    `args.frontier_dpo_betas`. Returns the folders of the doctors by name and of the DPO models by strength, then
    family (loaded only to decode, one at a time: a CPU's memory holds few copies of a large patient)."""
    doctors = {}
    for family in doctor_families(context.args):
        doctors[family.name] = train_doctor(context, family, scored)
        print(f"[demo] {family.name} ready ({context.timings.get(f'{family.name} training', 0):.0f} s)")
    dpo_models: dict[float, dict] = {}
    if not context.args.baselines:
        return doctors, dpo_models
    for beta in [DPO_BETA, *(b for b in context.args.frontier_dpo_betas if b != DPO_BETA)]:
        models = [(DPO, "dpo_model", context.patient)]
        if context.doctor_base is not None:
            models.append((WEAK_DPO, "weak_dpo_model", context.doctor_base))
        dpo_models[beta] = {}
        for family, folder, model in models:
            folder = folder if beta == DPO_BETA else f"{folder}_beta{beta:g}"
            dpo_models[beta][family] = train_dpo(context, pairs, model, dpo_row_name(family, beta), folder, beta)
    return doctors, dpo_models


def dpo_row_name(family: str, beta: float) -> str:
    """The row name of a DPO model of `family` (DPO on the patient, on the doctors' base) trained at strength `beta`
    (TRL's strength keeps the family's name)."""
    return family if beta == DPO_BETA else f"{family}, DPO beta {beta:g}"
