"""Weak-to-strong guidance: a small doctor steers a larger frozen patient that shares its tokenizer.

The doctor only has to share the patient's vocabulary (same tokenizer); its size is free. On a CPU machine the
example pairs the embedded SmolLM2-135M-Instruct patient with a doctor that is either

- a saved doctor (`--doctor PATH_OR_ID`, e.g. trained with `examples/train_doctor.py --doctor_layers 8`), or
- the patient's first `--doctor_layers` layers (`tfpo_hf.doctor.modeling.truncated_causal_lm`), untrained and mixed in
  without a reference: this shows the mechanics and the cost of a small doctor, not an alignment gain.

A TFPO doctor adds its learned token reward, log p_doctor - log p_ref, where the reference is the model the doctor
started from. A doctor trained as a LoRA copy of a *small* patient records "the patient is my reference", which is
wrong for a larger patient: `--reference initial` (the default here) uses the weights the doctor started from (a
LoRA doctor's base with the adapter disabled, or the model a full-weight doctor records), at the cost of a second
cached forward of the doctor's size per token.

With the Hub reachable, the same script runs a real weak-to-strong pair, e.g. a doctor trained on
SmolLM2-135M-Instruct guiding SmolLM2-1.7B-Instruct (same tokenizer):

    python examples/weak_to_strong.py --patient HuggingFaceTB/SmolLM2-1.7B-Instruct --doctor my-135m-doctor --dtype bfloat16

It prints unguided and guided answers, and the decoding speed (new tokens per second) of each.

Usage:

    python examples/weak_to_strong.py                          # SmolLM2 + its first 8 layers as the doctor
    python examples/weak_to_strong.py --doctor_layers 4 --beta 1.0 --max_new_tokens 48
    python examples/weak_to_strong.py --doctor my-doctor --prompt "Describe a sunrise." "Give me a tip."
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessorList, set_seed
from trl import TrlParser

from tfpo_hf import DoctorLogitsProcessor
from tfpo_hf.doctor.modeling import truncated_causal_lm
from tfpo_hf.utils.embedded_patient import DTYPES, load_patient


DEFAULT_PROMPTS = ["Describe a sunrise in one sentence.", "Give me one tip for learning to cook."]


@dataclass
class WeakToStrongArguments:
    patient: str | None = field(
        default=None, metadata={"help": "The large patient (Hub id or path); omitted: the embedded SmolLM2-135M."}
    )
    doctor: str | None = field(
        default=None, metadata={"help": "A saved doctor (path or Hub id) sharing the patient's tokenizer."}
    )
    doctor_layers: int = field(
        default=8, metadata={"help": "Without --doctor: the doctor is the patient's first K layers (untrained)."}
    )
    dtype: str = field(default="float32", metadata={"help": "Dtype of patient and doctor.", "choices": list(DTYPES)})
    prompt: list[str] = field(default_factory=list, metadata={"help": "User prompts; omitted: two built-in ones."})
    beta: float | None = field(default=None, metadata={"help": "Doctor weight; omitted: the doctor's recorded one."})
    alpha: float | None = field(default=None, metadata={"help": "Patient weight; omitted: the recorded one (1)."})
    reference: str = field(
        default="initial",
        metadata={
            "help": "Reference of a saved doctor: `initial` (the weights it started from), a path or Hub id, or "
            "`none` (mix it in without one)."
        },
    )
    max_new_tokens: int = field(default=32, metadata={"help": "Tokens generated per prompt."})
    seed: int = field(default=0, metadata={"help": "Random seed."})


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def main(args: WeakToStrongArguments) -> dict:
    dtype = DTYPES[args.dtype]
    patient, tokenizer = load_patient(args.patient, dtype)
    if args.doctor is not None:
        doctor, doctor_name = args.doctor, args.doctor  # loaded (and its tokenizer checked) by the processor
        reference = args.reference
    else:
        doctor = truncated_causal_lm(patient, args.doctor_layers)
        doctor_name = f"first {args.doctor_layers} layers of the patient (untrained)"
        reference = "none"
    guide = DoctorLogitsProcessor(
        doctor, betas=args.beta, alpha=args.alpha, references=reference, tokenizer=tokenizer, dtype=dtype
    )
    print(
        f"patient: {parameter_count(patient):,} parameters; doctor ({doctor_name}): "
        f"{parameter_count(guide.doctors[0]):,} parameters"
    )

    tokenizer.padding_side = "left"
    prompts = args.prompt or DEFAULT_PROMPTS
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    guide.set_attention_mask(inputs["attention_mask"])
    prompt_length = inputs["input_ids"].shape[1]

    report = {}
    for name, processors in (("unguided", LogitsProcessorList()), ("guided", LogitsProcessorList([guide]))):
        set_seed(args.seed)
        start = time.perf_counter()
        with torch.inference_mode():
            generated = patient.generate(
                **inputs,
                logits_processor=processors,
                max_new_tokens=args.max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        seconds = time.perf_counter() - start
        new_tokens = generated[:, prompt_length:]
        # Count the tokens up to and including each row's first EOS (the rest is padding generate() appends).
        finished = (new_tokens == tokenizer.eos_token_id).int().cumsum(-1)
        count = int(((finished == 0) | ((finished == 1) & (new_tokens == tokenizer.eos_token_id))).sum())
        report[name] = {
            "texts": tokenizer.batch_decode(new_tokens, skip_special_tokens=True),
            "new_tokens": count,
            "seconds": seconds,
            "tokens_per_second": count / seconds,
        }

    for i, prompt in enumerate(prompts):
        print(f"\n>>> {prompt}")
        for name in ("unguided", "guided"):
            print(f"[{name}] {report[name]['texts'][i].strip()}")
    print()
    for name in ("unguided", "guided"):
        print(
            f"{name:>9}: {report[name]['new_tokens']} tokens in {report[name]['seconds']:.2f} s = "
            f"{report[name]['tokens_per_second']:.1f} tokens/s"
        )
    print(
        f"guided / unguided time per token: "
        f"{report['unguided']['tokens_per_second'] / report['guided']['tokens_per_second']:.2f}x"
    )
    return report


if __name__ == "__main__":
    (arguments,) = TrlParser((WeakToStrongArguments,)).parse_args_and_config()
    main(arguments)
