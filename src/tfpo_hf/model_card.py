"""The model card written beside every saved doctor: Hub metadata, the method, settings, metrics and usage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import UNRECORDED_BETA

CITATION = """@article{llmdoctor2025,
  title   = {LLMdoctor: Token-Level Flow-Guided Preference Optimization for Efficient Test-Time Alignment of Large Language Models},
  journal = {arXiv preprint},
  year    = {2025}
}"""


def guidance_sentence(tfpo_config: dict[str, Any]) -> str:
    """How the processor decodes with this doctor when a call gives no weights."""
    beta, alpha = tfpo_config.get("beta", UNRECORDED_BETA), tfpo_config.get("alpha", 1.0)
    if tfpo_config.get("guidance") != "ratio":
        return f"Decoding mixes log-probabilities: {alpha:g} * log p_patient + {beta:g} * log p_doctor."
    reference = ("the patient itself (the doctor is a copy of it, so this costs no extra forward)"
                 if tfpo_config.get("guidance_reference") == "patient" else "the weights the doctor started from")
    return (f"Ratio guidance (the doctor was trained against a reference policy): {alpha:g} * log p_patient + "
            f"{beta:g} * (log p_doctor - log p_ref), the reference being {reference}. To guide a different patient "
            "than the one above, pass `references=\"base\"` (a LoRA doctor) or the model it started from.")


def write_model_card(
    path: str | Path,
    tfpo_config: dict[str, Any],
    base_model: str | None = None,
    dataset_name: str | None = None,
    hyperparameters: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
) -> None:
    """Write `README.md` for a doctor: YAML metadata (`library_name: tfpo-hf`, tags, base model, datasets) and a body."""
    metadata = ["---", "library_name: tfpo-hf", "tags:", "- tfpo", "- llmdoctor", "- test-time-alignment", "- trl"]
    if base_model:
        metadata.append(f"base_model: {base_model}")
    if dataset_name:
        metadata += ["datasets:", f"- {dataset_name}"]
    metadata.append("---")
    patient = tfpo_config.get("patient_name_or_path") or "the patient it was trained for"
    body = [
        f"# TFPO doctor for {patient}",
        "",
        "A small causal LM trained with token-level flow-guided preference optimization (TFPO, LLMdoctor) "
        "to steer a frozen patient model at decoding time. It is not meant to be sampled alone.",
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList",
        "from tfpo_hf import DoctorLogitsProcessor",
        "",
        f'patient = AutoModelForCausalLM.from_pretrained("{patient}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{patient}")',
        'doctor = DoctorLogitsProcessor("<this repo>", tokenizer=tokenizer)  # the defaults recorded below',
        'inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Hi!"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)',
        "output = patient.generate(**inputs, logits_processor=LogitsProcessorList([doctor]), max_new_tokens=64)",
        "```",
        "",
        guidance_sentence(tfpo_config),
        "",
        "## Settings saved with the doctor (`tfpo_config.json`)",
        "",
        "```json",
        json.dumps(tfpo_config, indent=2, sort_keys=True),
        "```",
    ]
    if hyperparameters:
        body += ["", "## Training hyperparameters", ""] + [f"- {k}: {v}" for k, v in sorted(hyperparameters.items())]
    if metrics:
        body += ["", "## Metrics", ""] + [f"- {k}: {v:.4g}" for k, v in sorted(metrics.items())]
    body += ["", "## Citation", "", "```bibtex", CITATION, "```", ""]
    Path(path).write_text("\n".join(metadata + [""] + body))
