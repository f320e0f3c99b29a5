"""`tfpo-hf demo`: the whole method on the embedded SmolLM2-135M-Instruct patient, on a CPU, with a report.

Task: continue the opening of a movie review (320 shipped openings, see `data/PROVENANCE.md`) in a warm and
positive way, judged by the VADER sentiment analyser (a third-party judge from PyPI).

1. Preference pairs: the patient samples several continuations per training prompt; VADER picks the best as
   `chosen` and the worst as `rejected`.
2. Stage 1: the patient's positive and negative faces score every response token.
3. Stage 2: a doctor (a LoRA copy of the patient by default, or its first layers) trains with TFPO.
4. Stage 3 and evaluation: held-out prompts are answered by the unguided patient, LLMdoctor at several betas and
   the baselines (GenARM-style trajectory-level doctor, DPO via TRL, best-of-N with the judge); the report holds a
   metrics table, sample generations side by side, a score-versus-diversity plot and a token-reward heatmap.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import TrlParser

from .config import TFPOConfig, TokenRewardConfig
from .defaults import DTYPES, load_default_patient
from .evaluation import (
    Method,
    best_of_n_generate_fn,
    evaluate_methods,
    get_judge,
    patient_generate_fn,
    plot_score_vs_diversity,
    results_table,
    write_results_json,
)
from .evaluation.baselines import TrajectoryBTTrainer
from .logits_process import DoctorLogitsProcessor
from .modeling import DoctorModel
from .rewards import TokenRewardScorer, reward_statistics
from .trainer import TFPOTrainer

logger = logging.getLogger(__name__)

POSITIVE_FACE = "You are a warm, enthusiastic film critic. Your writing is positive, kind and full of praise."
NEGATIVE_FACE = "You are a harsh, gloomy film critic. Your writing is negative, dismissive and full of complaints."
PROMPT_TEMPLATE = 'Continue this movie review in one or two sentences: "{opening}"'


@dataclass
class DemoArguments:
    output_dir: str = field(default="tfpo_demo", metadata={"help": "Report directory."})
    quick: bool = field(default=False, metadata={"help": "A 2-minute version with tiny sizes (used by the tests)."})
    train_prompts: int = field(default=64, metadata={"help": "Prompts used to build preference pairs."})
    eval_prompts: int = field(default=32, metadata={"help": "Held-out prompts for the evaluation."})
    samples_per_prompt: int = field(default=4, metadata={"help": "Patient samples per training prompt (best vs worst)."})
    max_new_tokens: int = field(default=32, metadata={"help": "Tokens generated per response."})
    doctor_layers: int = field(
        default=0,
        metadata={"help": "0: the doctor is a LoRA copy of the patient (default: it starts as a fluent LM); K > 0: "
                  "the patient's first K layers, trained in full (cheaper to decode, but a poor LM at the start)."},
    )
    epochs: float = field(default=2.0, metadata={"help": "Doctor training epochs."})
    learning_rate: float = field(
        default=2e-4, metadata={"help": "Learning rate of every trained method (both doctors' LoRA and DPO's LoRA)."}
    )
    value_head_learning_rate: float | None = field(
        default=None, metadata={"help": "Value-head learning rate of the TFPO doctor (None: --learning_rate)."}
    )
    theta: float = field(default=0.5, metadata={"help": "Token-reward sparsity threshold."})
    lambda_value: float = field(default=0.1, metadata={"help": "Weight of the value-discrimination loss."})
    betas: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0], metadata={"help": "Doctor weights to sweep."})
    alpha: float = field(default=1.0, metadata={"help": "Patient weight."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of every sampled method."})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus threshold of every sampled method."})
    best_of_n: int = field(default=4, metadata={"help": "N of the best-of-N baseline (0 skips it)."})
    baselines: bool = field(default=True, metadata={"help": "Train and evaluate the GenARM-style and DPO baselines."})
    dtype: str = field(default="bfloat16", metadata={"help": "Patient dtype for sampling and decoding.",
                                                     "choices": ["float32", "bfloat16"]})
    judge: str = field(default="vader", metadata={"help": "Built-in judge name."})
    seed: int = field(default=0, metadata={"help": "Random seed."})

    def __post_init__(self):
        if self.quick:
            self.train_prompts, self.eval_prompts, self.samples_per_prompt = 12, 6, 2
            self.max_new_tokens, self.epochs = 12, 1.0
            self.betas, self.best_of_n = [0.5, 1.0], 2


def load_prompts() -> list[dict]:
    """The shipped movie-review openings with their human ratings."""
    text = resources.files("tfpo_hf").joinpath("data/movie_review_openings.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def chat(opening: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": PROMPT_TEMPLATE.format(opening=opening)}]


def build_preference_pairs(
    patient: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict]], judge, args: DemoArguments
) -> tuple[Dataset, dict]:
    """Sample `samples_per_prompt` continuations per prompt; keep the judge's best and worst as chosen/rejected."""
    sample = patient_generate_fn(
        patient, tokenizer, batch_size=16, do_sample=True, temperature=1.0, top_p=0.95,
        max_new_tokens=args.max_new_tokens,
    )
    samples = [sample(prompts, args.seed + k) for k in range(args.samples_per_prompt)]
    rows, ties = [], 0
    for i, prompt in enumerate(prompts):
        scored = sorted(((judge(s[i]), s[i]) for s in samples), key=lambda pair: pair[0])
        (worst_score, worst), (best_score, best) = scored[0], scored[-1]
        if best_score == worst_score or not best.strip():
            ties += 1
            continue
        rows.append({
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": best}],
            "rejected": [{"role": "assistant", "content": worst}],
            "chosen_score": best_score,
            "rejected_score": worst_score,
        })
    stats = {"pairs": len(rows), "prompts_without_a_pair": ties,
             "mean_chosen_score": sum(r["chosen_score"] for r in rows) / max(len(rows), 1),
             "mean_rejected_score": sum(r["rejected_score"] for r in rows) / max(len(rows), 1)}
    return Dataset.from_list(rows), stats


def make_doctor(patient: PreTrainedModel, args: DemoArguments) -> tuple[DoctorModel, object | None]:
    """The doctor and, for a LoRA copy, its PEFT config; the doctor always trains in float32."""
    if args.doctor_layers > 0:
        return DoctorModel.from_patient(patient, args.doctor_layers).float(), None
    from peft import LoraConfig

    return DoctorModel.from_patient(patient, patient.config.num_hidden_layers).float(), LoraConfig(
        r=16, lora_alpha=32, target_modules="all-linear"
    )


def training_config(output_dir: Path, args: DemoArguments, **overrides) -> TFPOConfig:
    values = dict(
        output_dir=str(output_dir), num_train_epochs=args.epochs, learning_rate=args.learning_rate,
        per_device_train_batch_size=8, logging_steps=5, save_strategy="no", report_to="none", use_cpu=True,
        theta=args.theta, lambda_value=args.lambda_value, positive_system_prompt=POSITIVE_FACE,
        negative_system_prompt=NEGATIVE_FACE, guidance_alpha=args.alpha, guidance_beta=args.betas[0],
        seed=args.seed, disable_tqdm=True, max_length=256, value_head_learning_rate=args.value_head_learning_rate,
    )
    return TFPOConfig(**{**values, **overrides})


def train_doctor(trainer_class, name: str, folder: str, patient, scored: Dataset, tokenizer, args: DemoArguments,
                 output_dir: Path, training_logs: dict, timings: dict) -> str:
    """Train a doctor with `trainer_class` (TFPO or the GenARM-style baseline), save it under `output_dir/folder`,
    record its log history and time; returns the saved path."""
    clock = time.perf_counter()
    doctor, peft_config = make_doctor(patient, args)
    trainer = trainer_class(
        doctor, args=training_config(output_dir / "runs" / folder, args), train_dataset=scored,
        processing_class=tokenizer, peft_config=peft_config,
    )
    trainer.train()
    path = str(output_dir / folder)
    trainer.save_model(path)
    training_logs[name] = trainer.state.log_history
    timings[f"{name} training"] = time.perf_counter() - clock
    return path


def beta_sweep(family: str, doctor_path: str, patient, tokenizer, args: DemoArguments, sampling: dict) -> list[Method]:
    """One guided method per beta; the doctor is loaded once and shared by the processors."""
    from transformers import AutoModelForCausalLM

    doctor = AutoModelForCausalLM.from_pretrained(doctor_path, dtype=DTYPES[args.dtype]).eval()
    return [
        Method(
            f"{family} beta={beta:g}",
            patient_generate_fn(
                patient, tokenizer, batch_size=8,
                processor_factory=lambda b=beta: DoctorLogitsProcessor(doctor, betas=b, alpha=args.alpha, tokenizer=tokenizer),
                **sampling,
            ),
            family=family, beta=beta,
        )
        for beta in args.betas
    ]


def train_dpo(patient: PreTrainedModel, tokenizer, pairs: Dataset, output_dir: Path, args: DemoArguments):
    """TRL's DPOTrainer with LoRA on a float32 copy of the patient, with the doctors' learning rate and epochs;
    returns the merged model and the log history."""
    import copy

    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(
        str(output_dir), num_train_epochs=args.epochs, learning_rate=args.learning_rate,
        per_device_train_batch_size=8, logging_steps=5, save_strategy="no", report_to="none", use_cpu=True,
        bf16=False, gradient_checkpointing=False, max_length=256, disable_tqdm=True, seed=args.seed,
    )
    trainer = DPOTrainer(
        copy.deepcopy(patient).float(), args=config,
        train_dataset=pairs.select_columns(["prompt", "chosen", "rejected"]), processing_class=tokenizer,
        peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"),
    )
    trainer.train()
    return trainer.model.merge_and_unload().to(patient.dtype).eval(), trainer.state.log_history


def write_report(output_dir: Path, args: DemoArguments, results, pair_stats, reward_stats, timings, training_logs,
                 eval_prompts) -> Path:
    """`report.md`: settings, the metrics table, training summaries and sample generations side by side."""
    by_name = {r.name: r for r in results}
    shown = [r.name for r in results]
    lines = [
        "# tfpo-hf demo report",
        "",
        f"Task: continue a movie-review opening warmly; judge: {args.judge} (higher is more positive). "
        f"{len(eval_prompts)} held-out prompts, one sample each, same seed for every method. Win rate is against "
        "`patient (sampling)`, ties counting one half.",
        "",
        results_table(results),
        "",
        "![score versus diversity](reward_vs_diversity.png)",
        "",
        "## Data and training",
        "",
        f"- Preference pairs: {pair_stats['pairs']} (mean judge score chosen {pair_stats['mean_chosen_score']:+.3f}, "
        f"rejected {pair_stats['mean_rejected_score']:+.3f}; {pair_stats['prompts_without_a_pair']} prompts gave no pair).",
        f"- Token rewards: {reward_stats['response_tokens']} response tokens, "
        f"{reward_stats['nonzero_fraction']:.1%} non-zero (theta={args.theta}); token heatmap: `token_rewards.html`, "
        "`token_rewards.png`.",
    ]
    for name, history in training_logs.items():
        losses = [entry["loss"] for entry in history if "loss" in entry]
        last = next((entry for entry in reversed(history) if "doctor/accuracy" in entry), {})
        if losses:
            summary = f"- {name}: loss {losses[0]:.4g} -> {losses[-1]:.4g} over {len(losses)} logs"
            if last:
                summary += f", final train accuracy {last['doctor/accuracy']:.2f}, margin {last['doctor/margin']:+.2f}"
            lines.append(summary + ".")
    lines += ["", "## Time (seconds)", ""] + [f"- {k}: {v:.1f}" for k, v in timings.items()]
    lines += ["", "## Settings", "", "```json", json.dumps(asdict(args), indent=2), "```", "", "## Samples", ""]
    for i, prompt in enumerate(eval_prompts[:5]):
        lines += [f"### {prompt[0]['content']}", ""]
        lines += [f"- **{name}** ({by_name[name].scores[i]:+.2f}): {by_name[name].texts[i]}" for name in shown]
        lines.append("")
    path = output_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def run_demo(args: DemoArguments) -> Path:
    """Run the pipeline and write the report directory; returns the path of `report.md`."""
    from .visualize import plot_token_rewards_png, render_token_rewards_html

    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    judge = get_judge(args.judge)
    patient, tokenizer = load_default_patient(dtype=DTYPES[args.dtype])
    openings = load_prompts()
    random.Random(args.seed).shuffle(openings)
    train_prompts = [chat(o["opening"]) for o in openings[: args.train_prompts]]
    eval_prompts = [chat(o["opening"]) for o in openings[-args.eval_prompts :]]
    timings["load patient"] = time.perf_counter() - clock

    clock = time.perf_counter()
    pairs, pair_stats = build_preference_pairs(patient, tokenizer, train_prompts, judge, args)
    timings["sample and judge preference pairs"] = time.perf_counter() - clock
    print(f"[demo] {pair_stats['pairs']} preference pairs ({timings['sample and judge preference pairs']:.0f} s)")

    clock = time.perf_counter()
    reward_config = TokenRewardConfig(positive_system_prompt=POSITIVE_FACE, negative_system_prompt=NEGATIVE_FACE,
                                      theta=args.theta, batch_size=16, max_length=256)
    scorer = TokenRewardScorer(patient, tokenizer, reward_config)
    scored = scorer.score_dataset(pairs)
    reward_stats = reward_statistics(scored)
    examples = [scorer.score(row["prompt"], row["chosen"], chosen=True) for row in pairs.select(range(min(3, len(pairs))))]
    examples += [scorer.score(row["prompt"], row["rejected"], chosen=False) for row in pairs.select(range(min(3, len(pairs))))]
    render_token_rewards_html(examples, output_dir / "token_rewards.html", title="Token rewards of training examples",
                              tokenizer=tokenizer)
    plot_token_rewards_png(examples, output_dir / "token_rewards.png", tokenizer=tokenizer)
    timings["stage 1 token rewards"] = time.perf_counter() - clock
    print(f"[demo] token rewards: {reward_stats['nonzero_fraction']:.1%} non-zero")

    training_logs: dict[str, list] = {}
    doctor_path = train_doctor(TFPOTrainer, "TFPO doctor", "doctor", patient, scored, tokenizer, args, output_dir,
                               training_logs, timings)
    print(f"[demo] doctor trained and saved to {doctor_path} ({timings['TFPO doctor training']:.0f} s)")

    sampling = dict(do_sample=True, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    unguided_sampling = patient_generate_fn(patient, tokenizer, batch_size=8, **sampling)
    methods = [
        Method("patient (greedy)", patient_generate_fn(patient, tokenizer, batch_size=8, do_sample=False,
                                                       max_new_tokens=args.max_new_tokens)),
        Method("patient (sampling)", unguided_sampling),
    ]
    methods += beta_sweep("LLMdoctor", doctor_path, patient, tokenizer, args, sampling)
    if args.baselines:
        genarm_path = train_doctor(TrajectoryBTTrainer, "GenARM-style doctor", "genarm_doctor", patient, scored,
                                   tokenizer, args, output_dir, training_logs, timings)
        methods += beta_sweep("GenARM-style", genarm_path, patient, tokenizer, args, sampling)
        clock = time.perf_counter()
        dpo_model, training_logs["DPO (TRL, LoRA)"] = train_dpo(patient, tokenizer, pairs, output_dir / "runs" / "dpo", args)
        timings["DPO training"] = time.perf_counter() - clock
        methods.append(Method("DPO (TRL, LoRA)", patient_generate_fn(dpo_model, tokenizer, batch_size=8, **sampling)))
    if args.best_of_n:
        methods.append(Method(f"best-of-{args.best_of_n} (judge)", best_of_n_generate_fn(unguided_sampling, judge, args.best_of_n)))

    clock = time.perf_counter()
    results = evaluate_methods(methods, eval_prompts, judge, reference="patient (sampling)", seed=args.seed)
    timings["evaluation"] = time.perf_counter() - clock
    write_results_json(results, output_dir / "results.json", settings=asdict(args), pairs=pair_stats, rewards=reward_stats)
    plot_score_vs_diversity(results, output_dir / "reward_vs_diversity.png", judge_name=args.judge)
    report = write_report(output_dir, args, results, pair_stats, reward_stats, timings, training_logs, eval_prompts)
    print(results_table(results))
    print(f"[demo] report: {report}\n[demo] plot: {output_dir / 'reward_vs_diversity.png'}\n"
          f"[demo] token rewards: {output_dir / 'token_rewards.html'}\n[demo] doctor: {output_dir / 'doctor'}")
    return report


def main(argv: list[str] | None = None) -> None:
    (args,) = TrlParser((DemoArguments,), prog="tfpo-hf demo").parse_args_and_config(argv)
    run_demo(args)
