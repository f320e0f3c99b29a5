"""`DoctorConfig`: what a doctor records about itself in `doctor_config.json` (how it was trained, how to decode
it)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..utils.constants import DOCTOR_CONFIG_NAME, LEGACY_DOCTOR_CONFIG_NAME
from ..utils.hub import check_name_or_path, find_file


UNRECORDED_BETA = 0.5  # the weight of a doctor that records no decoding defaults (a plain causal LM, an old doctor)
GUIDANCE_MODES = ("ratio", "mix")
GUIDANCE_REFERENCES = ("patient", "initial")
# fields renamed since a doctor saved as `tfpo_config.json` was written: old key -> field
LEGACY_FIELD_NAMES = {"reference_name_or_path": "initial_name_or_path", "reference_num_layers": "initial_num_layers"}


@dataclass
class DoctorConfig:
    r"""
    What a doctor records about itself, saved beside its weights as `doctor_config.json`: the patient it was trained
    for, the stage-1 reward settings and flow reference it was trained with, and how to decode it. [`TFPOTrainer`]
    fills it in; [`DoctorLogitsProcessor`] and [`GuidedModel`] read the decoding defaults when a call gives no
    weights; [`DoctorModel`] holds it as `doctor_config`. Every field is optional: a plain causal LM, or a doctor
    saved before a field existed, leaves it `None` and decodes with the processor's fallbacks (the mix, beta 0.5,
    alpha 1). Keys renamed since older doctors were saved (`reference_name_or_path`, `reference_num_layers`) are read
    under their new names.

    Args:
        patient_name_or_path (`str`, *optional*):
            The patient the doctor was trained for.
        copy_of_patient (`bool`, *optional*):
            Whether the doctor started as a whole copy of that patient (then ratio guidance can take the patient's
            own scores as the reference, at no extra cost).
        theta (`float`, *optional*):
            The sparsity threshold of the token rewards it was trained on.
        tau (`float`, *optional*):
            The temperature of the reward normalisation it was trained on.
        positive_system_prompt (`str`, *optional*):
            The patient's positive face in stage 1.
        negative_system_prompt (`str`, *optional*):
            The patient's negative face in stage 1.
        flow_reference (`str`, *optional*):
            `"initial"` (the flow anchored on the doctor's initial weights) or `"none"` (the paper's literal flow).
        initial_name_or_path (`str`, *optional*):
            The checkpoint the doctor's initial weights came from (its reference for `references="initial"`).
        initial_num_layers (`int`, *optional*):
            How many decoder layers of that checkpoint the doctor started with.
        alpha (`float`, *optional*):
            The default weight of the patient's log-probabilities at decoding.
        beta (`float`, *optional*):
            The default weight of the doctor at decoding (0.5 when `None`, see `decoding_beta`).
        guidance (`str`, *optional*):
            `"ratio"` (alpha * log p + beta * (log p_doctor - log p_ref)) or `"mix"` (alpha * log p + beta *
            log p_doctor).
        guidance_reference (`str`, *optional*):
            For ratio guidance: `"patient"` (the patient's own scores) or `"initial"` (the doctor's initial weights).
        beta_choice (`dict[str, Any]`, *optional*):
            How `beta` was chosen, when [`choose_beta`] chose it: the rule, the candidates and the table measured on
            the validation prompts (see [`BetaChoice.to_dict`]).
        extra (`dict[str, Any]`, *optional*, defaults to `{}`):
            Keys of the file this version does not know: kept, and saved again.

    Examples:

    ```python
    >>> import tempfile
    >>> from tfpo_hf import DoctorConfig

    >>> config = DoctorConfig(flow_reference="initial", guidance="ratio", guidance_reference="patient", beta=2.0)
    >>> config.to_dict()  # the JSON object of doctor_config.json; fields left None are omitted
    {'flow_reference': 'initial', 'beta': 2.0, 'guidance': 'ratio', 'guidance_reference': 'patient'}
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     config.save_pretrained(folder)
    ...     DoctorConfig.from_pretrained(folder) == config
    True
    >>> DoctorConfig().decoding_beta  # a doctor that records no beta
    0.5
    >>> old = DoctorConfig.from_dict({"reference_name_or_path": "my-base", "new_key": 1})  # an older file's keys
    >>> old.initial_name_or_path, old.extra
    ('my-base', {'new_key': 1})

    ```
    """

    patient_name_or_path: str | None = None
    copy_of_patient: bool | None = None
    theta: float | None = None
    tau: float | None = None
    positive_system_prompt: str | None = None
    negative_system_prompt: str | None = None
    flow_reference: str | None = None
    initial_name_or_path: str | None = None
    initial_num_layers: int | None = None
    alpha: float | None = None
    beta: float | None = None
    guidance: str | None = None
    guidance_reference: str | None = None
    beta_choice: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def decoding_beta(self) -> float:
        """The doctor weight to decode with when a call gives none."""
        return UNRECORDED_BETA if self.beta is None else float(self.beta)

    def is_truncated_copy(self, initial_name_or_path: str) -> bool:
        """Whether a doctor whose weights started from `initial_name_or_path` is a truncated copy of its patient:
        not a whole copy, yet started from the patient's own checkpoint (a doctor started from another model, weak to
        strong, is not)."""
        return self.copy_of_patient is False and initial_name_or_path == self.patient_name_or_path

    @property
    def uses_ratio(self) -> bool:
        return self.guidance == "ratio"

    # ------------------------------------------------------------------ conversion
    @classmethod
    def from_dict(cls, values: dict[str, Any] | DoctorConfig | None) -> DoctorConfig:
        if isinstance(values, DoctorConfig):
            return values
        values = dict(values or {})
        values = {LEGACY_FIELD_NAMES.get(k, k): v for k, v in values.items()}
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            **{k: v for k, v in values.items() if k in known},
            extra={k: v for k, v in values.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object saved as `doctor_config.json` (fields left `None` are omitted)."""
        values = {k: v for k, v in asdict(self).items() if k != "extra" and v is not None}
        return {**self.extra, **values}

    # ------------------------------------------------------------------ files
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **hub_kwargs) -> DoctorConfig:
        """The config saved with a doctor (local folder or Hub repo); an empty one for a checkpoint without it.

        Raises:
            FileNotFoundError: `name_or_path` is a local path that does not exist.
            ValueError: `name_or_path` is not a `str` or `os.PathLike`, or (naming the file) `doctor_config.json` is
                unreadable or not a JSON object.
        """
        check_name_or_path("name_or_path", name_or_path)
        config_file = find_file(str(name_or_path), DOCTOR_CONFIG_NAME, hub_kwargs) or find_file(
            str(name_or_path), LEGACY_DOCTOR_CONFIG_NAME, hub_kwargs
        )
        if not config_file:
            return cls()
        try:
            values = json.loads(Path(config_file).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(
                f"{config_file} is not valid JSON ({error}): re-save the doctor or delete the file."
            ) from error
        if not isinstance(values, dict):
            raise ValueError(
                f"{config_file} holds a JSON {type(values).__name__}, not an object of settings: re-save the doctor "
                "or delete the file."
            )
        return cls.from_dict(values)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        Path(save_directory, DOCTOR_CONFIG_NAME).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
