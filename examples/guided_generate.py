"""Generate with a frozen patient, unguided and guided by one or more TFPO doctors, and print both side by side.

Prompts are batched with left padding; the batch's attention mask is handed to the `DoctorLogitsProcessor`
(`set_attention_mask`) so the doctors see the same padding as the patient.

Usage:

    python examples/guided_generate.py --doctor my-doctor                       # embedded SmolLM2 patient
    python examples/guided_generate.py --patient HuggingFaceTB/SmolLM2-360M-Instruct --doctor user/doctor \
        --beta 1.0 --prompt "Describe a sunset." "Review this film: ..."
    python examples/guided_generate.py --doctor helpful-doctor harmless-doctor --beta 0.5 0.8 \
        --do_sample --temperature 0.7 --top_p 0.9 --seed 1
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessorList, set_seed
from trl import TrlParser

from tfpo_hf import DoctorLogitsProcessor
from tfpo_hf.utils.embedded_patient import DTYPES, load_patient


DEFAULT_PROMPTS = [
    "Describe a rainy afternoon in two sentences.",
    "What do you think of people who are late?",
    'Continue this movie review: "The plot was slow, but',
]


@dataclass
class GuidedGenerateArguments:
    doctor: list[str] = field(
        metadata={
            "help": "Doctor path(s) or Hub id(s), space-separated after one flag (a repeated flag keeps only its last values)."
        }
    )
    patient: str | None = field(
        default=None, metadata={"help": "Patient Hub id or path; omitted: the embedded SmolLM2-135M-Instruct."}
    )
    dtype: str = field(default="float32", metadata={"help": "Dtype of patient and doctors.", "choices": list(DTYPES)})
    prompt: list[str] = field(default_factory=list, metadata={"help": "User prompt(s); omitted: three built-in ones."})
    beta: list[float] = field(
        default_factory=list,
        metadata={"help": "Doctor weight(s): one, or one per doctor; omitted: each doctor's recorded default."},
    )
    alpha: float | None = field(default=None, metadata={"help": "Patient weight; omitted: the recorded one (1)."})
    max_new_tokens: int = field(default=64, metadata={"help": "Tokens generated per prompt."})
    do_sample: bool = field(default=False, metadata={"help": "Sample (after guidance) instead of greedy decoding."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature, applied to the mixed scores."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus threshold, applied to the mixed scores."})
    seed: int = field(default=0, metadata={"help": "Random seed (the same for unguided and guided runs)."})
    width: int = field(default=60, metadata={"help": "Column width of the side-by-side printout."})


def side_by_side(left: str, right: str, width: int) -> str:
    left_lines = textwrap.wrap(left, width) or [""]
    right_lines = textwrap.wrap(right, width) or [""]
    rows = max(len(left_lines), len(right_lines))
    left_lines += [""] * (rows - len(left_lines))
    right_lines += [""] * (rows - len(right_lines))
    return "\n".join(f"{a:<{width}} | {b}" for a, b in zip(left_lines, right_lines))


def main(args: GuidedGenerateArguments) -> list[tuple[str, str, str]]:
    """Returns (prompt, unguided, guided) triples."""
    patient, tokenizer = load_patient(args.patient, args.dtype)
    tokenizer.padding_side = "left"
    prompts = args.prompt or DEFAULT_PROMPTS
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    # The chat template already holds the special tokens: do not add them again.
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)

    betas = args.beta if len(args.beta) > 1 else (args.beta[0] if args.beta else None)
    guide = DoctorLogitsProcessor(
        args.doctor, betas=betas, alpha=args.alpha, tokenizer=tokenizer, dtype=DTYPES[args.dtype]
    )
    guide.set_attention_mask(inputs["attention_mask"])  # the mask of this batch (prompts may start with the pad id)

    generate_kwargs = dict(
        max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, pad_token_id=tokenizer.pad_token_id
    )
    if args.do_sample:
        generate_kwargs.update(temperature=args.temperature, top_p=args.top_p)
    prompt_length = inputs["input_ids"].shape[1]
    outputs = {}
    for name, processors in (("unguided", LogitsProcessorList()), ("guided", LogitsProcessorList([guide]))):
        set_seed(args.seed)
        with torch.inference_mode():
            generated = patient.generate(**inputs, logits_processor=processors, **generate_kwargs)
        outputs[name] = tokenizer.batch_decode(generated[:, prompt_length:], skip_special_tokens=True)

    label = f"guided (alpha={guide.alpha:g}, beta={guide.betas})"
    results = []
    for prompt, plain, guided in zip(prompts, outputs["unguided"], outputs["guided"]):
        print(f"\n>>> {prompt}")
        print(side_by_side("unguided", label, args.width))
        print("-" * (2 * args.width + 3))
        print(side_by_side(plain.strip(), guided.strip(), args.width))
        results.append((prompt, plain, guided))
    return results


if __name__ == "__main__":
    (arguments,) = TrlParser((GuidedGenerateArguments,)).parse_args_and_config()
    main(arguments)
