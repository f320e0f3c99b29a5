"""Stage 2: train a doctor with TFPO on a preference dataset (scored first by the patient when it has no token
rewards), TRL-script style. Any flag of `TFPOConfig` (a `TrainingArguments`) and of TRL's `ModelConfig` (LoRA)
is accepted; `--config file.yaml` reads the same flags from YAML.

    # the embedded SmolLM2-135M-Instruct patient, a LoRA copy of it as the doctor
    tfpo-hf train --dataset prefs.jsonl --output_dir my-doctor --max_steps 50 --report_to none --use_cpu

    # a truncated doctor (the patient's first 8 layers), trained in full
    tfpo-hf train --dataset prefs.jsonl --doctor_layers 8 --output_dir small-doctor

    # a doctor of another family (its own tokenizer): the patient's rewards move onto the doctor's tokens
    tfpo-hf train --dataset prefs.jsonl --patient Qwen/Qwen2.5-Coder-1.5B-Instruct \
        --doctor HuggingFaceTB/SmolLM2-135M-Instruct --use_peft --output_dir smollm2-doctor

    # many processes: accelerate launch -m tfpo_hf.scripts.train --dataset ... --output_dir ...
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import TrlParser

from ..training.config import TFPOConfig
from .arguments import DatasetArguments, DoctorModelConfig, PatientArguments, resolve_peft_config


# the longer help texts of `TrainScriptArguments`
DOCTOR_HELP = (
    "Doctor to start from (Hub id or path; `--model_name_or_path` says the same); omitted: a copy of the patient "
    "(see --doctor_layers). A doctor whose tokenizer differs from the patient's trains on its own tokens, the "
    "patient's token rewards moved onto them."
)
DOCTOR_LAYERS_HELP = (
    "Without --doctor: 0 copies the whole patient (fluent from the start; LoRA by default), K > 0 keeps its first K "
    "layers (cheaper to decode, trained in full)."
)
MERGE_LORA_HELP = (
    "Merge the LoRA adapter into the doctor before saving: a plain causal-LM checkpoint that does not need the base "
    "model."
)


@dataclass
class TrainScriptArguments(DatasetArguments, PatientArguments):
    """The flags of `tfpo-hf train` besides `TFPOConfig`'s and the model's: the dataset, the patient, the doctor."""

    doctor: str | None = field(default=None, metadata={"help": DOCTOR_HELP})
    doctor_layers: int = field(default=0, metadata={"help": DOCTOR_LAYERS_HELP})
    eval_split: str | None = field(default=None, metadata={"help": "Split used for evaluation, if any."})
    merge_lora: bool = field(default=False, metadata={"help": MERGE_LORA_HELP})


def named_doctor(script_args: TrainScriptArguments, model_args: DoctorModelConfig) -> str | None:
    """The doctor to start from: `--doctor` or `--model_name_or_path` (the same one if both are given); None for a
    copy of the patient."""
    if script_args.doctor and model_args.model_name_or_path and script_args.doctor != model_args.model_name_or_path:
        raise ValueError("--doctor and --model_name_or_path name two different doctors: give one of them.")
    return script_args.doctor or model_args.model_name_or_path


def doctor_load_kwargs(model_args: DoctorModelConfig) -> dict:
    """The `from_pretrained` keywords TRL's model flags give a named doctor (revision, dtype, attention)."""
    kwargs = dict(
        revision=model_args.model_revision, dtype=model_args.dtype, attn_implementation=model_args.attn_implementation
    )
    return {key: value for key, value in kwargs.items() if value is not None}


def tokenizers_for(doctor: str | None, patient_tokenizer, model_args: DoctorModelConfig) -> dict:
    """`TFPOTrainer`'s tokenizers: the patient's for both, or, for a named doctor saved with a tokenizer of another
    vocabulary, the doctor's as `processing_class` and the patient's as `patient_processing_class`."""
    from transformers import AutoTokenizer

    if doctor:
        try:
            doctor_tokenizer = AutoTokenizer.from_pretrained(doctor, revision=model_args.model_revision)
        except (OSError, ValueError):  # no tokenizer saved with the doctor (an adapter folder): the patient's
            doctor_tokenizer = None
        if doctor_tokenizer is not None and doctor_tokenizer.get_vocab() != patient_tokenizer.get_vocab():
            return {"processing_class": doctor_tokenizer, "patient_processing_class": patient_tokenizer}
    return {"processing_class": patient_tokenizer}


def load_datasets(script_args: TrainScriptArguments) -> dict:
    """`TFPOTrainer`'s `train_dataset` and `eval_dataset` (None without `--eval_split`)."""
    train_dataset = script_args.load()
    eval_dataset = script_args.load(script_args.eval_split) if script_args.eval_split else None
    return {"train_dataset": train_dataset, "eval_dataset": eval_dataset}


def main(script_args: TrainScriptArguments, training_args: TFPOConfig, model_args: DoctorModelConfig) -> None:
    """Score the dataset if needed, train the doctor (a named one or a copy of the patient) and save it."""
    from ..training.doctor_setup import doctor_from_patient
    from ..training.trainer import TFPOTrainer

    script_args.doctor = named_doctor(script_args, model_args)
    whole_copy = script_args.doctor is None and script_args.doctor_layers == 0
    peft_config = resolve_peft_config(model_args, whole_copy=whole_copy)
    datasets = load_datasets(script_args)
    patient, tokenizer = PatientArguments.load(script_args)
    if script_args.doctor:
        training_args.model_init_kwargs = doctor_load_kwargs(model_args) | (training_args.model_init_kwargs or {})
    doctor = script_args.doctor or doctor_from_patient(patient, script_args.doctor_layers)
    trainer = TFPOTrainer(
        doctor,
        patient_model=patient,
        args=training_args,
        peft_config=peft_config,
        **tokenizers_for(script_args.doctor, tokenizer, model_args),
        **datasets,
    )
    del patient  # stage 1 is done
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    if peft_config is not None and script_args.merge_lora:
        trainer.model.pretrained_model = trainer.model.pretrained_model.merge_and_unload()
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset)
    if trainer.is_world_process_zero():
        print(f"Doctor saved to {training_args.output_dir}")
    # Under `accelerate launch`, tear the process group down before exit: gloo's threads left running abort a rank
    # ("terminate called without an active exception") on some torch releases.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser of the script's, `TFPOConfig`'s and the doctor's model flags (`--config file.yaml` too)."""
    return TrlParser((TrainScriptArguments, TFPOConfig, DoctorModelConfig), prog=prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
