"""Train a TFPO doctor (LLMdoctor stage 2) on a preference dataset, TRL-script style.

The patient scores every response token with its two prompted faces (stage 1, inside `TFPOTrainer` when
`patient_model=` is given and the dataset has no token rewards yet), then the doctor trains with the
subtrajectory-balance flow loss plus value discrimination. Any flag of `TFPOConfig` (a `TrainingArguments`) is
accepted, and `--config file.yaml` reads the same flags from YAML.

Usage:

    # the embedded SmolLM2-135M-Instruct patient, a LoRA copy of it as the doctor (CPU, small run)
    python examples/train_doctor.py --dataset prefs.jsonl --output_dir my-doctor --max_steps 50 \
        --per_device_train_batch_size 4 --learning_rate 1e-4 --report_to none --use_cpu

    # a Hub dataset (map it to prompt/chosen/rejected first if needed: docs/guides/hub_datasets.md)
    python examples/train_doctor.py --dataset trl-lib/ultrafeedback_binarized --split train --max_examples 2000 \
        --patient HuggingFaceTB/SmolLM2-360M-Instruct --output_dir smollm2-doctor --bf16

    # a truncated, fully fine-tuned doctor: the patient's first 8 layers, no LoRA
    python examples/train_doctor.py --dataset prefs.jsonl --doctor_layers 8 --lora_r 0 --output_dir small-doctor

    # two CPU processes (DDP over gloo), or many GPUs with examples/accelerate/{ddp,fsdp,deepspeed_zero2}.yaml
    accelerate launch --config_file examples/accelerate/multi_cpu.yaml examples/train_doctor.py \
        --dataset prefs.jsonl --output_dir my-doctor --max_steps 50 --use_cpu

    # everything from a YAML file (keys are the flag names)
    python examples/train_doctor.py --config train_doctor.yaml
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import TrlParser

from tfpo_hf import DoctorModel, TFPOConfig, TFPOTrainer
from tfpo_hf.data import load_preference_dataset
from tfpo_hf.defaults import DTYPES, load_patient


@dataclass
class ScriptArguments:
    dataset: str = field(
        metadata={"help": "Preference dataset: Hub id, save_to_disk folder, or a .json/.jsonl/.parquet/.csv file, in "
                  "TRL's prompt/chosen/rejected (or chosen/rejected) format, standard or conversational."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    split: str = field(default="train", metadata={"help": "Dataset split."})
    max_examples: int | None = field(default=None, metadata={"help": "Use only the first N examples."})
    patient: str | None = field(
        default=None,
        metadata={"help": "Frozen patient: Hub id or local path; omitted: the embedded SmolLM2-135M-Instruct."},
    )
    patient_dtype: str = field(
        default="float32", metadata={"help": "Dtype of the patient (it only scores).", "choices": list(DTYPES)}
    )
    doctor: str | None = field(
        default=None,
        metadata={"help": "Doctor to start from (Hub id or path sharing the patient's tokenizer); omitted: a copy "
                  "of the patient (see --doctor_layers)."},
    )
    doctor_layers: int = field(
        default=0, metadata={"help": "Layers kept when the doctor is a copy of the patient; 0: all of them."}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank on the doctor's LM; 0: full fine-tuning."})
    lora_alpha: int | None = field(default=None, metadata={"help": "LoRA alpha; omitted: 2 * lora_r."})
    merge_lora: bool = field(
        default=False,
        metadata={"help": "Merge the LoRA adapter into the doctor before saving, so the checkpoint is a plain causal "
                  "LM that does not need the base model. Always done for a truncated copy (--doctor_layers > 0), "
                  "whose adapter would otherwise name the full-depth patient as its base."},
    )


def main(script_args: ScriptArguments, training_args: TFPOConfig) -> None:
    dataset = load_preference_dataset(
        script_args.dataset, script_args.dataset_config, script_args.split, script_args.max_examples
    )
    patient, tokenizer = load_patient(script_args.patient, script_args.patient_dtype)

    if script_args.doctor is None:
        num_layers = script_args.doctor_layers or patient.config.get_text_config().num_hidden_layers
        doctor = DoctorModel.from_patient(patient, num_layers=num_layers)
        doctor.pretrained_model.float()  # the doctor trains in float32 even next to a bf16 patient
    else:
        doctor = DoctorModel.from_pretrained(script_args.doctor, **(training_args.model_init_kwargs or {}))

    peft_config = None
    if script_args.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=script_args.lora_r,
            lora_alpha=script_args.lora_alpha or 2 * script_args.lora_r,
            target_modules="all-linear",
        )

    trainer = TFPOTrainer(
        doctor,
        patient_model=patient,  # stage 1 runs here, once (cached by the dataset fingerprint)
        args=training_args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    del patient
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    truncated_copy = script_args.doctor is None and script_args.doctor_layers > 0
    if peft_config is not None and (script_args.merge_lora or truncated_copy):
        trainer.model.pretrained_model = trainer.model.pretrained_model.merge_and_unload()
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset)
    if trainer.is_world_process_zero():
        print(f"Doctor saved to {training_args.output_dir}")


if __name__ == "__main__":
    parser = TrlParser((ScriptArguments, TFPOConfig))
    script_args, training_args = parser.parse_args_and_config()
    main(script_args, training_args)
