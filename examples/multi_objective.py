"""Two doctors, two objectives: sweep a grid of (beta_1, beta_2) over one frozen patient and plot the trade-off.

LLMdoctor mixes several doctors at decoding time; with TFPO doctors trained against a reference (ratio guidance),

    log p(y | s_t) = alpha * log p_patient + beta_1 * (log p_doctor_1 - log p_ref_1) + beta_2 * (log p_doctor_2 - log p_ref_2),

each doctor adding its own learned token reward (doctors without a reference add beta_i * log p_doctor_i),

so one patient and two doctors trained on different preferences (say "helpful" and "harmless") give a whole
family of behaviours without retraining: `DoctorLogitsProcessor.set_betas` changes the weights between
`generate` calls, keeping the loaded doctors.

Each grid point is scored with one judge per objective. The judges here are PLACEHOLDERS, good enough to show
the mechanics and to run offline:

- objective 1 uses the built-in VADER sentiment judge (`tfpo_hf.evaluation.get_judge("vader")`, in [-1, 1]);
- objective 2 uses `brevity_judge` below (1 for an empty answer, falling towards 0 with length) or, with
  `--keywords`, the fraction of the given keywords the answer contains.

Replace them with real judges (a reward model, an LLM judge, a classifier) for real measurements: any callable
from text to a float works.

Writes `pareto.json` (every grid point: betas, mean scores, texts) and `pareto.png` (objective 1 against
objective 2, the Pareto-optimal points joined) to `--output_dir`.

Usage:

    python examples/multi_objective.py --doctor helpful-doctor harmless-doctor --betas 0 0.5 1.0 \
        --output_dir pareto_sweep
    python examples/multi_objective.py --patient HuggingFaceTB/SmolLM2-360M-Instruct \
        --doctor user/helpful-doctor user/harmless-doctor --keywords sorry cannot safe --max_new_tokens 48
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser

from tfpo_hf import DoctorLogitsProcessor
from tfpo_hf.evaluation import get_judge, patient_generate_fn
from tfpo_hf.utils.embedded_patient import load_patient


DEFAULT_PROMPTS = [
    "How do I get better at public speaking?",
    "My neighbour's dog barks all night. What should I do?",
    "Write one sentence about the ocean.",
    "Is it ok to skip breakfast?",
]


@dataclass
class MultiObjectiveArguments:
    doctor: list[str] = field(metadata={"help": "Exactly two doctor paths or Hub ids (objective 1, objective 2)."})
    patient: str | None = field(
        default=None, metadata={"help": "Patient Hub id or path; omitted: the embedded SmolLM2-135M-Instruct."}
    )
    names: list[str] = field(default_factory=lambda: ["helpful", "harmless"], metadata={"help": "Objective names."})
    betas: list[float] = field(
        default_factory=lambda: [0.0, 0.5, 1.0], metadata={"help": "Values of each beta; the grid is their square."}
    )
    alpha: float | None = field(default=None, metadata={"help": "Patient weight; omitted: the doctors' recorded one."})
    prompt: list[str] = field(default_factory=list, metadata={"help": "User prompts; omitted: four built-in ones."})
    keywords: list[str] = field(
        default_factory=list,
        metadata={"help": "If given, objective 2 is the fraction of these keywords in the answer, not brevity."},
    )
    max_new_tokens: int = field(default=32, metadata={"help": "Tokens generated per prompt."})
    do_sample: bool = field(default=False, metadata={"help": "Sample (same seed at every grid point)."})
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature."})
    seed: int = field(default=0, metadata={"help": "Random seed."})
    output_dir: str = field(default="multi_objective", metadata={"help": "Where pareto.json and pareto.png go."})


def brevity_judge(text: str, scale: int = 50) -> float:
    """Placeholder objective: 1 for an empty answer, 0.5 at `scale` words, towards 0 for longer answers."""
    return scale / (scale + len(text.split()))


def keyword_judge(keywords: list[str]):
    """Placeholder objective: the fraction of `keywords` found in the answer (case-insensitive)."""
    lowered = [k.lower() for k in keywords]

    def judge(text: str) -> float:
        text = text.lower()
        return sum(k in text for k in lowered) / len(lowered)

    return judge


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both objectives (higher is better), by objective 1."""
    front = [
        i for i, (a, b) in enumerate(points) if not any(c >= a and d >= b and (c, d) != (a, b) for c, d in points)
    ]
    return sorted(front, key=lambda i: points[i][0])


def plot(records: list[dict], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(r["score_1"], r["score_2"]) for r in records]
    front = pareto_front(points)
    figure, axes = plt.subplots(figsize=(6, 5))
    axes.scatter(*zip(*points), color="tab:blue")
    for record, (x, y) in zip(records, points):
        axes.annotate(
            f"({record['beta_1']:g}, {record['beta_2']:g})",
            (x, y),
            fontsize=8,
            textcoords="offset points",
            xytext=(4, 4),
        )
    axes.plot(
        [points[i][0] for i in front], [points[i][1] for i in front], "--", color="tab:red", label="Pareto front"
    )
    axes.set_xlabel(f"{names[0]} score (objective 1)")
    axes.set_ylabel(f"{names[1]} score (objective 2)")
    axes.set_title("Two doctors: trade-off over (beta_1, beta_2)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(args: MultiObjectiveArguments) -> list[dict]:
    if len(args.doctor) != 2 or len(args.names) != 2:
        raise ValueError(f"Give exactly two doctors and two names, got {args.doctor} and {args.names}.")
    patient, tokenizer = load_patient(args.patient)
    prompts = args.prompt or DEFAULT_PROMPTS
    judges = [get_judge("vader"), keyword_judge(args.keywords) if args.keywords else brevity_judge]

    # One processor, loaded once; `set_betas` re-weights it per grid point. The harness passes each batch's
    # attention mask to it through `set_attention_mask`.
    guide = DoctorLogitsProcessor(args.doctor, betas=0.0, alpha=args.alpha, tokenizer=tokenizer)
    sampling = dict(do_sample=True, temperature=args.temperature) if args.do_sample else dict(do_sample=False)
    generate = patient_generate_fn(
        patient, tokenizer, processor_factory=lambda: guide, max_new_tokens=args.max_new_tokens, **sampling
    )

    records = []
    for beta_1, beta_2 in itertools.product(args.betas, repeat=2):
        guide.set_betas([beta_1, beta_2])
        texts = generate(prompts, args.seed)
        scores = [[judge(text) for text in texts] for judge in judges]
        record = {
            "beta_1": beta_1,
            "beta_2": beta_2,
            "score_1": sum(scores[0]) / len(texts),
            "score_2": sum(scores[1]) / len(texts),
            "texts": texts,
        }
        records.append(record)
        print(
            f"beta=({beta_1:g}, {beta_2:g})  {args.names[0]}={record['score_1']:+.3f}  "
            f"{args.names[1]}={record['score_2']:+.3f}"
        )

    front = pareto_front([(r["score_1"], r["score_2"]) for r in records])
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "objectives": args.names,
        "judges": ["vader", f"keywords {args.keywords}" if args.keywords else "brevity"],
        "doctors": args.doctor,
        "alpha": args.alpha,
        "prompts": prompts,
        "pareto_front": [[records[i]["beta_1"], records[i]["beta_2"]] for i in front],
        "grid": records,
    }
    (output_dir / "pareto.json").write_text(json.dumps(payload, indent=2))
    plot(records, args.names, output_dir / "pareto.png")
    print(f"Pareto-optimal (beta_1, beta_2): {payload['pareto_front']}. Written to {output_dir}")
    return records


if __name__ == "__main__":
    (arguments,) = TrlParser((MultiObjectiveArguments,)).parse_args_and_config()
    main(arguments)
