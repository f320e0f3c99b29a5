"""The doctors a server guides with, chosen by whoever starts the server, never by a request: a JSON object in the
environment variable `TFPO_HF_DOCTORS`, read alike by the vLLM logits processor and by the `transformers serve`
recipe. A request only chooses its betas (`doctor_betas`). Nothing here imports a serving engine.

```python
>>> import json, os
>>> os.environ[DOCTORS_ENV] = json.dumps({"doctors": "path/to/doctor", "dtype": "bfloat16"})
>>> settings = engine_settings()
>>> settings["doctors"], from_pretrained_kwargs(settings)
(['path/to/doctor'], {'dtype': torch.bfloat16})
>>> del os.environ[DOCTORS_ENV]

```
"""

from __future__ import annotations

import json
import os

import torch


DOCTORS_ENV = "TFPO_HF_DOCTORS"  # the engine's doctors (JSON); one name for vLLM and transformers serve
REQUEST_ARG = "doctor_betas"  # what a request sets to ask for guidance
SETTINGS = ("doctors", "references", "alpha", "dtype")


def engine_settings() -> dict:
    """The engine's doctors, from `TFPO_HF_DOCTORS`: a JSON object with `doctors` (a path or Hub id, or a list of
    them) and optionally `references`, `alpha` and `dtype` (as `DoctorLogitsProcessor` takes them); `doctors` is
    always returned as a list.

    Raises:
        ValueError: when the variable is unset, not JSON, or holds other keys.
    """
    raw = os.environ.get(DOCTORS_ENV)
    if not raw:
        raise ValueError(
            f"{DOCTORS_ENV} is not set: set it to the engine's doctors before starting the server, for example "
            f'{DOCTORS_ENV}=\'{{"doctors": ["path/to/doctor"]}}\' (doctors are configured for the engine, not by '
            "requests)."
        )
    try:
        settings = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"{DOCTORS_ENV} is not valid JSON ({error}): {raw!r}") from None
    if not isinstance(settings, dict) or "doctors" not in settings or set(settings) - set(SETTINGS):
        raise ValueError(f"{DOCTORS_ENV} must be a JSON object with `doctors` and optionally {SETTINGS[1:]}: {raw!r}")
    settings["doctors"] = settings["doctors"] if isinstance(settings["doctors"], list) else [settings["doctors"]]
    return settings


def from_pretrained_kwargs(settings: dict) -> dict:
    """What loading the doctors takes from `settings`: `{"dtype": torch.<dtype>}` when it names one, else nothing.

    Raises:
        ValueError: when `dtype` is not the name of a torch dtype.
    """
    if "dtype" not in settings:
        return {}
    dtype = getattr(torch, str(settings["dtype"]), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(
            f"{DOCTORS_ENV}: dtype={settings['dtype']!r} is not a torch dtype: give its name, for example "
            '"float32", "bfloat16" or "float16".'
        )
    return {"dtype": dtype}


def place_models(doctors, references, device) -> None:
    """Put a server's doctors (each model once) and the references that are models on `device`, in eval mode."""
    models = [*doctors, *(reference for reference in references if isinstance(reference, torch.nn.Module))]
    for model in {id(model): model for model in models}.values():
        model.to(device).eval()
