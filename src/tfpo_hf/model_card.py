"""The model card written beside every saved doctor: Hub metadata, the method, settings, metrics and usage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CITATION = """@article{llmdoctor2025,
  title   = {LLMdoctor: Token-Level Flow-Guided Preference Optimization for Efficient Test-Time Alignment of Large Language Models},
  journal = {arXiv preprint},
  year    = {2025}
}"""


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
    alpha, beta = tfpo_config.get("alpha", 1.0), tfpo_config.get("beta", 0.5)
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
        f'doctor = DoctorLogitsProcessor("<this repo>", betas={beta}, alpha={alpha}, tokenizer=tokenizer)',
        'inputs = tokenizer.apply_chat_template([{"role": "user", "content": "Hi!"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)',
        "output = patient.generate(**inputs, logits_processor=LogitsProcessorList([doctor]), max_new_tokens=64)",
        "```",
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
