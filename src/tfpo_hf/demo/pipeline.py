"""`tfpo-hf demo`: the whole method on the embedded SmolLM2-135M-Instruct patient, on a CPU, with a report.

Task: continue the opening of a movie review (320 shipped openings, see `demo/PROVENANCE.md`) in a warm and
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

import copy
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..adapters import has_adapter
from ..baselines import TrajectoryBTTrainer
from ..config import DEFAULT_GUIDANCE_BETA, TFPOConfig, TokenRewardConfig
from ..doctor_builder import doctor_from_patient
from ..embedded_patient import DTYPES, load_default_patient
from ..evaluation import (
    Method,
    best_of_n_generate_fn,
    evaluate_methods,
    get_judge,
    patient_generate_fn,
    plot_score_vs_diversity,
    results_table,
    write_results_json,
)
from ..logits_process import DoctorLogitsProcessor
from ..modeling import DoctorModel
from ..rewards import TokenRewardScorer, reward_statistics
from ..scripts.arguments import DoctorModelConfig, resolve_peft_config
from ..trainer import TFPOTrainer
from .report import DemoOutcome, write_report


logger = logging.getLogger(__name__)

POSITIVE_FACE = "You are a warm, enthusiastic film critic. Your writing is positive, kind and full of praise."
NEGATIVE_FACE = "You are a harsh, gloomy film critic. Your writing is negative, dismissive and full of complaints."
PROMPT_TEMPLATE = 'Continue this movie review in one or two sentences: "{opening}"'
DEMO_LEARNING_RATE = 5e-4  # measured with the betas on the validation prompts: docs/results.md
LITERAL, LITERAL_BETA = "LLMdoctor, literal flow", 1.0  # the paper-literal ablation and its (mix) beta


@dataclass
class DemoArguments:
    output_dir: str = field(default="tfpo_demo", metadata={"help": "Report directory."})
    quick: bool = field(default=False, metadata={"help": "A 2-minute version with tiny sizes (used by the tests)."})
    train_prompts: int = field(
        default=96,
        metadata={"help": "Training prompts: `validation_prompts` of them choose betas, the rest make pairs."},
    )
    validation_prompts: int = field(
        default=32, metadata={"help": "Training prompts held out of the pairs to choose each baseline's beta."}
    )
    eval_prompts: int = field(default=64, metadata={"help": "Held-out prompts of the reported evaluation."})
    seeds: list[int] = field(default_factory=lambda: [0, 1], metadata={"help": "Sampling seeds of the evaluation."})
    samples_per_prompt: int = field(
        default=4, metadata={"help": "Patient samples per training prompt (best vs worst)."}
    )
    max_new_tokens: int = field(default=32, metadata={"help": "Tokens generated per response."})
    doctor_layers: int = field(
        default=0,
        metadata={
            "help": "0: the doctor is a LoRA copy of the patient (default: it starts as a fluent LM); K > 0: "
            "the patient's first K layers, trained in full (cheaper to decode, but a poor LM at the start)."
        },
    )
    epochs: float = field(default=2.0, metadata={"help": "Training epochs of every trained method."})
    learning_rate: float = field(
        default=DEMO_LEARNING_RATE,
        metadata={"help": "Learning rate of every trained method (LoRA of both doctors and DPO)."},
    )
    value_head_learning_rate: float | None = field(
        default=None, metadata={"help": "Value-head learning rate of the TFPO doctors (None: --learning_rate)."}
    )
    theta: float = field(default=0.5, metadata={"help": "Token-reward sparsity threshold."})
    lambda_value: float = field(default=0.1, metadata={"help": "Weight of the value-discrimination loss."})
    beta: float = field(
        default=DEFAULT_GUIDANCE_BETA, metadata={"help": "LLMdoctor's beta (ratio guidance), saved as its default."}
    )
    betas: list[float] = field(
        default_factory=lambda: [1.0, 2.0, 4.0],
        metadata={"help": "Betas swept on the validation prompts; each baseline doctor is evaluated at its best."},
    )
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of every sampled method."})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus threshold of every sampled method."})
    best_of_n: int = field(default=4, metadata={"help": "N of the best-of-N baseline (0 skips it)."})
    baselines: bool = field(default=True, metadata={"help": "Train and evaluate the GenARM-style and DPO baselines."})
    ablation: bool = field(
        default=True, metadata={"help": "Train and evaluate the paper-literal flow (no reference) as an ablation."}
    )
    dtype: str = field(
        default="bfloat16",
        metadata={"help": "Patient dtype for sampling and decoding.", "choices": ["float32", "bfloat16"]},
    )
    judge: str = field(default="vader", metadata={"help": "Built-in judge name."})
    seed: int = field(default=0, metadata={"help": "Random seed (prompt split, pairs, training)."})

    def __post_init__(self):
        if self.quick:
            self.train_prompts, self.validation_prompts, self.eval_prompts = 16, 4, 6
            self.samples_per_prompt, self.max_new_tokens, self.epochs = 2, 12, 1.0
            self.betas, self.seeds, self.best_of_n = [1.0, 2.0], [0], 2
        if not 0 < self.validation_prompts < self.train_prompts:
            raise ValueError(
                f"validation_prompts ({self.validation_prompts}) must be at least 1 and fewer than train_prompts "
                f"({self.train_prompts}): the rest of the training prompts make the preference pairs."
            )
        if self.train_prompts + self.eval_prompts > len(load_prompts()):
            raise ValueError(
                f"train_prompts + eval_prompts = {self.train_prompts + self.eval_prompts} is more than the "
                f"{len(load_prompts())} shipped prompts."
            )


def load_prompts() -> list[dict]:
    """The shipped movie-review openings with their human ratings."""
    text = resources.files("tfpo_hf.demo").joinpath("movie_review_openings.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def chat(opening: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": PROMPT_TEMPLATE.format(opening=opening)}]


def build_preference_pairs(
    patient: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict]], judge, args: DemoArguments
) -> tuple[Dataset, dict]:
    """Sample `samples_per_prompt` continuations per prompt; keep the judge's best and worst as chosen/rejected."""
    sample = patient_generate_fn(
        patient,
        tokenizer,
        batch_size=16,
        do_sample=True,
        temperature=1.0,
        top_p=0.95,
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
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": best}],
                "rejected": [{"role": "assistant", "content": worst}],
                "chosen_score": best_score,
                "rejected_score": worst_score,
            }
        )
    stats = {
        "pairs": len(rows),
        "prompts_without_a_pair": ties,
        "mean_chosen_score": sum(r["chosen_score"] for r in rows) / max(len(rows), 1),
        "mean_rejected_score": sum(r["rejected_score"] for r in rows) / max(len(rows), 1),
    }
    return Dataset.from_list(rows), stats


def make_doctor(patient: PreTrainedModel, args: DemoArguments) -> tuple[DoctorModel, object | None]:
    """The doctor and its PEFT config, as `tfpo-hf train` makes them with its defaults: LoRA on a whole copy of the
    patient, a truncated copy (`doctor_layers > 0`) trained in full; float32 either way."""
    peft_config = resolve_peft_config(DoctorModelConfig(), whole_copy=args.doctor_layers == 0)
    return doctor_from_patient(patient, args.doctor_layers), peft_config


def training_config(output_dir: Path, args: DemoArguments, **overrides) -> TFPOConfig:
    values = dict(
        output_dir=str(output_dir),
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=8,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        theta=args.theta,
        lambda_value=args.lambda_value,
        positive_system_prompt=POSITIVE_FACE,
        negative_system_prompt=NEGATIVE_FACE,
        guidance_beta=args.beta,
        seed=args.seed,
        disable_tqdm=True,
        max_length=256,
        value_head_learning_rate=args.value_head_learning_rate,
    )
    return TFPOConfig(**{**values, **overrides})


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
        runs.append(DoctorRun("GenARM-style", "genarm_doctor", TrajectoryBTTrainer))
    return runs


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
    saved doctor reloaded in the decoding dtype (with its `tfpo_config`, so the processor reads its defaults)."""
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
    doctors through `DoctorLogitsProcessor` (the recorded guidance still applies: `tfpo_config` is kept)."""
    doctor = DoctorModel.from_pretrained(path, dtype=dtype)
    if has_adapter(doctor.pretrained_model):
        doctor.pretrained_model = doctor.pretrained_model.merge_and_unload()
    return doctor.eval()


def guided_method(name: str, doctor: DoctorModel, beta: float, patient, tokenizer, sampling: dict, family: str = ""):
    """Sampling from the patient guided by `doctor` at `beta`, with the doctor's recorded guidance (ratio or mix)."""
    factory = lambda: DoctorLogitsProcessor(doctor, betas=beta, tokenizer=tokenizer)  # noqa: E731
    generate = patient_generate_fn(patient, tokenizer, batch_size=8, processor_factory=factory, **sampling)
    return Method(name, generate, family=family, beta=beta)


def train_dpo(patient: PreTrainedModel, tokenizer, pairs: Dataset, output_dir: Path, args: DemoArguments):
    """TRL's DPOTrainer with LoRA on a float32 copy of the patient, with the doctors' learning rate and epochs;
    returns the merged model and the log history."""
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    config = DPOConfig(
        str(output_dir),
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=8,
        logging_steps=5,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        max_length=256,
        disable_tqdm=True,
        seed=args.seed,
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


def split_prompts(args: DemoArguments) -> tuple[list, list, list]:
    """(pair prompts, validation prompts, evaluation prompts): disjoint, from one seeded shuffle of the openings."""
    openings = load_prompts()
    random.Random(args.seed).shuffle(openings)
    train = [chat(o["opening"]) for o in openings[: args.train_prompts]]
    evaluation = [chat(o["opening"]) for o in openings[len(openings) - args.eval_prompts :]]
    return train[: -args.validation_prompts], train[-args.validation_prompts :], evaluation


def memoized(generate):
    """A `Method.generate` that remembers its texts per (prompts, seed): best-of-N then reuses the unguided samples."""
    cache: dict = {}

    def cached(prompts, seed):
        key = (json.dumps(prompts), seed)
        if key not in cache:
            cache[key] = generate(prompts, seed)
        return cache[key]

    return cached


def choose_betas(
    doctors: dict[str, DoctorModel],
    unguided: Method,
    patient,
    tokenizer,
    prompts,
    judge,
    args: DemoArguments,
    sampling: dict,
) -> tuple[dict[str, float], list]:
    """Each doctor family's best beta of `args.betas` by mean judge score on the validation prompts (first seed);
    returns the choices and every validation result (for the report)."""
    methods = [unguided] + [
        guided_method(f"{family} beta={beta:g}", doctor, beta, patient, tokenizer, sampling, family=family)
        for family, doctor in doctors.items()
        for beta in args.betas
    ]
    results = evaluate_methods(methods, prompts, judge, reference=unguided.name, seeds=args.seeds[:1])
    best = {}
    for family in doctors:
        candidates = [r for r in results if r.family == family]
        best[family] = max(candidates, key=lambda r: r.mean_score).beta
    return best, results


def score_pairs(patient, tokenizer, pairs: Dataset, args: DemoArguments, output_dir: Path) -> tuple[Dataset, dict]:
    """Stage 1 on the pairs, plus a heatmap of the token rewards of the first three pairs."""
    from .visualize import plot_token_rewards_png, render_token_rewards_html

    reward_config = TokenRewardConfig(
        positive_system_prompt=POSITIVE_FACE,
        negative_system_prompt=NEGATIVE_FACE,
        theta=args.theta,
        batch_size=16,
        max_length=256,
    )
    scorer = TokenRewardScorer(patient, tokenizer, reward_config)
    scored = scorer.score_dataset(pairs)
    shown = pairs.select(range(min(3, len(pairs))))
    examples = [scorer.score(row["prompt"], row["chosen"], chosen=True) for row in shown]
    examples += [scorer.score(row["prompt"], row["rejected"], chosen=False) for row in shown]
    render_token_rewards_html(
        examples, output_dir / "token_rewards.html", title="Token rewards of training examples", tokenizer=tokenizer
    )
    plot_token_rewards_png(examples, output_dir / "token_rewards.png", tokenizer=tokenizer)
    return scored, reward_statistics(scored)


def run_demo(args: DemoArguments) -> Path:
    """Run the pipeline and write the report directory; returns the path of `report.md`."""
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    judge = get_judge(args.judge)
    patient, tokenizer = load_default_patient(dtype=DTYPES[args.dtype])
    pair_prompts, validation_prompts, eval_prompts = split_prompts(args)
    timings["load patient"] = time.perf_counter() - clock

    clock = time.perf_counter()
    pairs, pair_stats = build_preference_pairs(patient, tokenizer, pair_prompts, judge, args)
    timings["sample and judge preference pairs"] = time.perf_counter() - clock
    print(f"[demo] {pair_stats['pairs']} preference pairs ({timings['sample and judge preference pairs']:.0f} s)")

    clock = time.perf_counter()
    scored, reward_stats = score_pairs(patient, tokenizer, pairs, args, output_dir)
    timings["stage 1 token rewards"] = time.perf_counter() - clock
    print(f"[demo] token rewards: {reward_stats['nonzero_fraction']:.1%} non-zero")

    training_logs: dict[str, list] = {}
    doctors = {}
    for run in doctor_runs(args):
        doctors[run.name] = train_doctor(run, patient, scored, tokenizer, args, output_dir, training_logs, timings)
        print(f"[demo] {run.name} trained ({timings[f'{run.name} training']:.0f} s)")
    if args.baselines:
        clock = time.perf_counter()
        dpo_model, training_logs["DPO (TRL, LoRA)"] = train_dpo(
            patient, tokenizer, pairs, output_dir / "runs" / "dpo", args
        )
        timings["DPO (TRL, LoRA) training"] = time.perf_counter() - clock

    sampling = dict(do_sample=True, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    unguided = Method(
        "patient (sampling)", memoized(patient_generate_fn(patient, tokenizer, batch_size=8, **sampling))
    )
    clock = time.perf_counter()
    swept = {name: doctor for name, doctor in doctors.items() if name == "GenARM-style"}
    chosen_betas, validation_results = (
        choose_betas(swept, unguided, patient, tokenizer, validation_prompts, judge, args, sampling)
        if swept
        else ({}, [])
    )
    timings["beta choice on the validation prompts"] = time.perf_counter() - clock
    if args.ablation:  # not swept, to fit the CPU budget: its betas 1, 2, 4 overlapped in every sweep (results.md)
        chosen_betas = {LITERAL: LITERAL_BETA, **chosen_betas}

    methods = [
        unguided,
        guided_method(
            f"LLMdoctor beta={args.beta:g}",
            doctors["LLMdoctor"],
            args.beta,
            patient,
            tokenizer,
            sampling,
            family="LLMdoctor",
        ),
    ]
    methods += [
        guided_method(f"{name} beta={beta:g}", doctors[name], beta, patient, tokenizer, sampling, family=name)
        for name, beta in chosen_betas.items()
    ]
    if args.baselines:
        methods.append(Method("DPO (TRL, LoRA)", patient_generate_fn(dpo_model, tokenizer, batch_size=8, **sampling)))
    if args.best_of_n:
        methods.append(
            Method(
                f"best-of-{args.best_of_n} (judge)", best_of_n_generate_fn(unguided.generate, judge, args.best_of_n)
            )
        )
    clock = time.perf_counter()
    results = evaluate_methods(methods, eval_prompts, judge, reference=unguided.name, seeds=args.seeds)
    timings["evaluation"] = time.perf_counter() - clock
    write_results_json(
        results,
        output_dir / "results.json",
        settings=asdict(args),
        pairs=pair_stats,
        rewards=reward_stats,
        chosen_betas=chosen_betas,
        validation=[r.summary() for r in validation_results],
    )
    plot_score_vs_diversity(results, output_dir / "reward_vs_diversity.png", judge_name=args.judge)
    report = write_report(
        output_dir,
        args,
        DemoOutcome(
            results, validation_results, chosen_betas, pair_stats, reward_stats, timings, training_logs, eval_prompts
        ),
    )
    print(results_table(results))
    print(
        f"[demo] report: {report}\n[demo] plot: {output_dir / 'reward_vs_diversity.png'}\n"
        f"[demo] token rewards: {output_dir / 'token_rewards.html'}\n[demo] doctor: {output_dir / 'doctor'}"
    )
    return report
