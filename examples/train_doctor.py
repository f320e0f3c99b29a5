"""Train a TFPO doctor (LLMdoctor stage 2) on a preference dataset: the script to copy into your own project.

It is `tfpo-hf train`: the patient scores every completion token with its two prompted faces (stage 1, inside
`TFPOTrainer` when the dataset has no token rewards yet), then the doctor trains with the subtrajectory-balance
flow loss plus value discrimination. Every flag of `TFPOConfig` (a `TrainingArguments`) and of TRL's `ModelConfig`
(LoRA: `--use_peft`, `--lora_r`, ...) is accepted; `--config file.yaml` reads the same flags from YAML.

Usage:

    # the embedded SmolLM2-135M-Instruct patient, a LoRA copy of it as the doctor (CPU, small run)
    python examples/train_doctor.py --dataset prefs.jsonl --output_dir my-doctor --max_steps 50 \
        --per_device_train_batch_size 4 --learning_rate 5e-4 --report_to none --use_cpu

    # a Hub dataset (map it to prompt/chosen/rejected first if needed: docs/guides/hub_datasets.md)
    python examples/train_doctor.py --dataset trl-lib/ultrafeedback_binarized --split train --max_examples 2000 \
        --patient HuggingFaceTB/SmolLM2-360M-Instruct --output_dir smollm2-doctor --bf16

    # a truncated doctor, trained in full: the patient's first 8 layers
    python examples/train_doctor.py --dataset prefs.jsonl --doctor_layers 8 --output_dir small-doctor

    # two CPU processes (DDP over gloo), or many GPUs with examples/accelerate/{ddp,fsdp,deepspeed_zero2}.yaml
    accelerate launch --config_file examples/accelerate/multi_cpu.yaml examples/train_doctor.py \
        --dataset prefs.jsonl --output_dir my-doctor --max_steps 50 --use_cpu
"""

from tfpo_hf.scripts.train import main, make_parser


if __name__ == "__main__":
    script_args, training_args, model_args = make_parser().parse_args_and_config()
    main(script_args, training_args, model_args)
