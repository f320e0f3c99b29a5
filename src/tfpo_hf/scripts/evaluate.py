"""Judge unguided, guided (a beta sweep per doctor) and best-of-N generations of the patient, with intervals.

tfpo-hf evaluate --doctor my-doctor [--beta 1 2 4] [--prompts FILE] [--judge vader] [--seeds 0 1]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser

from .arguments import PatientArguments


@dataclass
class EvaluateScriptArguments(PatientArguments):
    """The flags of `tfpo-hf evaluate`: the doctors and betas to sweep, the prompts, the judge and decoding."""

    doctor: list[str] = field(default_factory=list, metadata={"help": "Doctor path(s) or Hub id(s) to sweep."})
    beta: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0], metadata={"help": "Doctor weights to sweep."})
    alpha: float | None = field(default=None, metadata={"help": "Patient weight; omitted: the doctors' recorded one."})
    prompts: str | None = field(
        default=None,
        metadata={
            "help": "A .jsonl/.txt file of prompts (field `prompt`, or one per line); omitted: the demo's "
            "held-out movie-review openings."
        },
    )
    num_prompts: int = field(default=40, metadata={"help": "Number of prompts used."})
    judge: str = field(default="vader", metadata={"help": "Built-in judge name."})
    best_of_n: int = field(default=4, metadata={"help": "N of the best-of-N method (0 skips it)."})
    max_new_tokens: int = field(default=40, metadata={"help": "Tokens generated per completion."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus threshold."})
    output_dir: str = field(default="tfpo_eval", metadata={"help": "Where results.json, results.md and the plot go."})
    seeds: list[int] = field(
        default_factory=lambda: [0], metadata={"help": "Sampling seeds (every method, same seeds)."}
    )


def read_prompts(path: str | None, count: int) -> list:
    """The first `count` prompts of a .jsonl (field `prompt`) or .txt file (one per line), or the demo's last
    `count` movie-review openings (held out from its training pairs) as chat prompts."""
    if path is None:
        from ..demo import chat, load_prompts

        return [chat(row["opening"]) for row in load_prompts()[-count:]]
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    if path.endswith(".jsonl"):
        return [json.loads(line)["prompt"] for line in lines][:count]
    return lines[:count]


def guided_methods(script_args: EvaluateScriptArguments, patient, tokenizer, sampling: dict) -> list:
    """One method per (doctor, beta): the patient sampled with `DoctorLogitsProcessor`."""
    from ..evaluation import Method, patient_generate_fn
    from ..guidance.logits_process import DoctorLogitsProcessor

    methods = []
    for doctor in script_args.doctor:
        for beta in script_args.beta:

            def factory(d=doctor, b=beta):
                return DoctorLogitsProcessor(d, betas=b, alpha=script_args.alpha, tokenizer=tokenizer)

            generate = patient_generate_fn(patient, tokenizer, processor_factory=factory, **sampling)
            methods.append(Method(f"{Path(doctor).name} beta={beta:g}", generate, family=Path(doctor).name, beta=beta))
    return methods


def main(script_args: EvaluateScriptArguments) -> None:
    """Judge every method on the same prompts and seeds; write results.json, results.md and the plot."""
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

    patient, tokenizer = script_args.load()
    judge = get_judge(script_args.judge)
    prompts = read_prompts(script_args.prompts, script_args.num_prompts)
    sampling = dict(
        do_sample=True,
        temperature=script_args.temperature,
        top_p=script_args.top_p,
        max_new_tokens=script_args.max_new_tokens,
    )
    unguided = patient_generate_fn(patient, tokenizer, **sampling)
    greedy = patient_generate_fn(patient, tokenizer, do_sample=False, max_new_tokens=script_args.max_new_tokens)
    methods = [Method("patient (greedy)", greedy), Method("patient (sampling)", unguided)]
    methods += guided_methods(script_args, patient, tokenizer, sampling)
    if script_args.best_of_n:
        methods.append(
            Method(
                f"best-of-{script_args.best_of_n} (judge)",
                best_of_n_generate_fn(unguided, judge, script_args.best_of_n),
            )
        )
    results = evaluate_methods(methods, prompts, judge, baseline="patient (sampling)", seeds=script_args.seeds)
    output_dir = Path(script_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_results_json(results, output_dir / "results.json", arguments=vars(script_args))
    (output_dir / "results.md").write_text(results_table(results) + "\n")
    plot_score_vs_diversity(results, output_dir / "reward_vs_diversity.png", judge_name=script_args.judge)
    print(results_table(results))
    print(f"Results written to {output_dir}")


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser of `EvaluateScriptArguments` (`--config file.yaml` too)."""
    return TrlParser((EvaluateScriptArguments,), prog=prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
