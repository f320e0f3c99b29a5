"""Stage 3: stream text from the frozen patient guided by one or more doctors.

tfpo-hf generate --doctor my-doctor --prompt "Write a haiku about rain." [--beta 2] [--patient ID]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import TrlParser

from .arguments import PatientArguments


@dataclass
class GenerateScriptArguments(PatientArguments):
    """The flags of `tfpo-hf generate`: the prompts, the doctors and their weights, decoding."""

    prompt: list[str] = field(
        default_factory=list, metadata={"help": "One or more user prompts (chat template applied)."}
    )
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

    def __post_init__(self):
        if not self.prompt:
            raise ValueError("--prompt is required: give one or more user prompts.")


def main(script_args: GenerateScriptArguments) -> None:
    """Stream the patient's answer to each prompt, guided by the doctors when any are given."""
    from transformers import LogitsProcessorList, TextStreamer, set_seed

    from ..guidance.logits_process import DoctorLogitsProcessor

    patient, tokenizer = script_args.load()
    processors = LogitsProcessorList()
    if script_args.doctor:
        betas = script_args.beta if len(script_args.beta) > 1 else (script_args.beta[0] if script_args.beta else None)
        processors.append(
            DoctorLogitsProcessor(script_args.doctor, betas=betas, alpha=script_args.alpha, tokenizer=tokenizer)
        )
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    for prompt in script_args.prompt:
        set_seed(script_args.seed)
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        print(f">>> {prompt}")
        patient.generate(
            **inputs,
            logits_processor=processors,
            streamer=streamer,
            max_new_tokens=script_args.max_new_tokens,
            do_sample=script_args.do_sample,
            temperature=script_args.temperature,
            top_p=script_args.top_p,
            pad_token_id=tokenizer.pad_token_id,
        )


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser of `GenerateScriptArguments` (`--config file.yaml` too)."""
    return TrlParser((GenerateScriptArguments,), prog=prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
