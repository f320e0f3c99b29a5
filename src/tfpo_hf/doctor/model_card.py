"""The model card written beside every saved doctor: Hub metadata, the method, settings, metrics and usage.

The card is rendered from `templates/doctor_card.md` with `huggingface_hub.ModelCard.from_template` (the way TRL
writes its trainers' cards); the YAML header comes from a `ModelCardData`. Nothing here touches the network.
"""

from __future__ import annotations

import json
import os
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .config import UNRECORDED_BETA


TEMPLATE = "templates/doctor_card.md"
LIBRARY_NAME = "tfpo-hf"
TAGS = ["tfpo", "llmdoctor", "test-time-alignment", "trl"]
PAPER_ID = "2601.10416"
PAPER_TITLE = (
    "LLMdoctor: Token-Level Flow-Guided Preference Optimization for Efficient Test-Time Alignment of "
    "Large Language Models"
)
PAPER_URL = f"https://arxiv.org/abs/{PAPER_ID}"
CITATION = f"""@article{{shen2026llmdoctor,
  title         = {{{PAPER_TITLE}}},
  author        = {{Shen, Tiesunlong and Mao, Rui and Wang, Jin and Sun, Heming and Zhang, Jian and Zhang, Xuejie and Cambria, Erik}},
  journal       = {{arXiv preprint arXiv:{PAPER_ID}}},
  eprint        = {{{PAPER_ID}}},
  archivePrefix = {{arXiv}},
  url           = {{{PAPER_URL}}},
  year          = {{2026}}
}}"""
# (distribution, label) pairs listed under "Framework versions"; read from installed metadata, nothing is imported.
FRAMEWORKS = (
    ("tfpo-hf", "tfpo-hf"),
    ("transformers", "Transformers"),
    ("trl", "TRL"),
    ("torch", "PyTorch"),
    ("peft", "PEFT"),
)
UNKNOWN_PATIENT = "the patient it was trained for"


def _as_dict(doctor_config: Any) -> dict[str, Any]:
    """The saved settings as a plain dict: a dict as is, an object with `to_dict()` (a `DoctorConfig`) converted."""
    if doctor_config is None:
        return {}
    if hasattr(doctor_config, "to_dict"):
        return dict(doctor_config.to_dict())
    return dict(doctor_config)


def guidance_sentence(doctor_config: dict[str, Any] | Any) -> str:
    """How the processor decodes with this doctor when a call gives no weights."""
    doctor_config = _as_dict(doctor_config)
    beta, alpha = doctor_config.get("beta", UNRECORDED_BETA), doctor_config.get("alpha", 1.0)
    if doctor_config.get("guidance") != "ratio":
        return f"Decoding mixes log-probabilities: {alpha:g} * log p_patient + {beta:g} * log p_doctor."
    reference = (
        "the patient itself (the doctor is a copy of it, so this costs no extra forward)"
        if doctor_config.get("guidance_reference") == "patient"
        else "the weights the doctor started from"
    )
    return (
        f"Ratio guidance (the doctor was trained against a reference policy): {alpha:g} * log p_patient + "
        f"{beta:g} * (log p_doctor - log p_ref), the reference being {reference}. To guide a different patient "
        'than the one above, pass `references="base"` (a LoRA doctor) or the model it started from.'
    )


def _hub_id(name: str | os.PathLike | None) -> str | None:
    """`name` if it can be a Hub repo id (not a local folder or file), else None: local paths make no Hub links."""
    if not name:
        return None
    name = str(name)
    if os.path.exists(name):
        return None
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return name


def _versions() -> list[tuple[str, str]]:
    """Installed versions of the libraries the doctor was saved with; those not installed are left out."""
    found = []
    for distribution, label in FRAMEWORKS:
        try:
            found.append((label, metadata.version(distribution)))
        except metadata.PackageNotFoundError:
            continue
    return found


def _format_metric(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def build_model_card(
    doctor_config: dict[str, Any] | Any,
    base_model: str | None = None,
    dataset_name: str | None = None,
    hyperparameters: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
) -> ModelCard:
    """The doctor's card as a `huggingface_hub.ModelCard` (see `write_model_card`)."""
    config = _as_dict(doctor_config)
    base_model = _hub_id(base_model)
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        tags=list(TAGS),
        base_model=base_model,
        datasets=[str(dataset_name)] if dataset_name else None,
        pipeline_tag="text-generation",
    )
    patient = config.get("patient_name_or_path")
    template = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    return ModelCard.from_template(
        card_data,
        template_str=template,
        patient_title=patient or UNKNOWN_PATIENT,
        patient_literal=json.dumps(str(patient or "<patient model>")),
        base_model=base_model,
        dataset_name=str(dataset_name) if dataset_name else None,
        dataset_link=_hub_id(dataset_name) is not None,
        guidance=guidance_sentence(config),
        tfpo_config_json=json.dumps(config, indent=2, sort_keys=True, default=str),
        hyperparameters=sorted((str(k), v) for k, v in (hyperparameters or {}).items()),
        training_metrics=sorted((str(k), _format_metric(v)) for k, v in (metrics or {}).items()),
        framework_versions=_versions(),
        paper_id=PAPER_ID,
        paper_title=PAPER_TITLE,
        paper_url=PAPER_URL,
        citation=CITATION,
    )


def write_model_card(
    path: str | Path,
    doctor_config: dict[str, Any] | Any,
    base_model: str | None = None,
    dataset_name: str | None = None,
    hyperparameters: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
) -> None:
    """Write `README.md` for a doctor: YAML metadata (`library_name: tfpo-hf`, tags, base model, datasets) and a body.

    `doctor_config` is the dict saved as `doctor_config.json`, or an object with `to_dict()`. `base_model` goes into the
    metadata only when it can be a Hub id (a local folder is left out, as TRL does). The card is rendered in full
    before the file is opened, so a rendering error leaves no partial file.
    """
    build_model_card(doctor_config, base_model, dataset_name, hyperparameters, metrics).save(path)
