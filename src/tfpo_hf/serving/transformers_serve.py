"""LLMdoctor guidance in `transformers serve`, the simple serving path: a `custom_generate` recipe.

transformers runs a model folder's `custom_generate/generate.py` in place of `generate()` when it loads that model
with `trust_remote_code=True`; `transformers serve MODEL_DIR --trust-remote-code` does. The recipe shipped here
(`RECIPE`, the folder `tfpo_hf/serving/custom_generate/`) is such a `generate.py`: it adds a `DoctorLogitsProcessor`
to the call when the request asks for guidance.

- The doctors are configured by whoever starts the server, in `TFPO_HF_DOCTORS` (see `tfpo_hf.serving.settings`;
  the vLLM processor reads the same variable), loaded with the first guided request and kept for the next ones.
- A request asks for guidance with `doctor_betas` in its `generation_config` (a JSON string, as `transformers serve`
  takes it): a number, one per doctor, `0` or `"default"` (as `request_betas` accepts them). A bad value is refused
  with HTTP 400 naming `doctor_betas`; a request without it is the patient alone, with no doctor work.
- A request cannot choose the recipe: `custom_generate` in a request's `generation_config` needs
  `trust_remote_code`, which a request cannot set (transformers 5.25 refuses it, earlier versions ignore it). The recipe is in the model folder, which
  the server's operator prepares (`add_recipe`, or `python -m tfpo_hf.serving.transformers_serve MODEL_DIR`).
- Sequential: `transformers serve` runs `generate()` for one request at a time (without `--continuous-batching`,
  which does not call `generate()` and so runs no doctor); for a batch of concurrent guided requests use vLLM.

Prepare a patient folder, then start the server:

    python -m tfpo_hf.serving.transformers_serve ./patient
    TFPO_HF_DOCTORS='{"doctors": ["./my-doctor"]}' transformers serve ./patient --trust-remote-code
"""

from __future__ import annotations

import argparse
import copy
import functools
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from transformers import LogitsProcessorList, PreTrainedTokenizerBase

from ..guidance.logits_process import DoctorLogitsProcessor
from .guided_requests import request_betas
from .settings import DOCTORS_ENV, REQUEST_ARG, engine_settings, from_pretrained_kwargs, place_models


logger = logging.getLogger(__name__)

RECIPE = Path(__file__).with_name("custom_generate")  # the folder a model folder gets as its `custom_generate/`
RECIPE_FILES = ("generate.py",)
RECIPE_MARK = "from tfpo_hf.serving.transformers_serve import"  # in every version of the recipe's generate.py


def add_recipe(model_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """Copy the recipe into a local model folder, as its `custom_generate/` folder.

    Args:
        model_dir: the patient's folder (its `config.json`, weights and tokenizer).
        overwrite: replace a `custom_generate/generate.py` that is not a version of this recipe (one that is, is
            replaced by this version).

    Returns:
        `Path`: the `custom_generate` folder written.

    Raises:
        FileNotFoundError: when `model_dir` is not a local model folder.
        FileExistsError: when it already has another `custom_generate/generate.py` and `overwrite` is not set.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{str(model_dir)!r} is not a local model folder (no config.json): save the patient there first "
            "(`model.save_pretrained(DIR)` and `tokenizer.save_pretrained(DIR)`, or `hf download MODEL_ID --local-dir "
            "DIR`), then add the recipe to DIR."
        )
    target = model_dir / "custom_generate"
    for name in RECIPE_FILES:
        existing = target / name
        if existing.exists() and not overwrite and RECIPE_MARK not in existing.read_text(errors="replace"):
            raise FileExistsError(
                f"{str(existing)!r} exists and is not tfpo_hf's recipe: move it away, or pass overwrite=True "
                "(--overwrite) to replace it."
            )
    target.mkdir(exist_ok=True)
    for name in RECIPE_FILES:
        shutil.copyfile(RECIPE / name, target / name)
    return target


def guided_generate(*args, model, **kwargs):
    """`model.generate(*args, **kwargs)`, guided by the server's doctors when `kwargs` ask for it (`doctor_betas`).

    What the recipe's `generate` runs. `doctor_betas` comes as an argument (`transformers serve` from 5.25 makes a
    request's `generation_config` keys arguments of `generate`) or as an attribute of `generation_config` (earlier
    versions build a `GenerationConfig` from them); either way it is removed before `generate` sees it. The doctors
    load once (`loaded_doctors`); their processor takes each call's betas and attention mask, and guided calls run
    one at a time (a processor serves one generation at a time), as `transformers serve` makes them anyway.

    Raises:
        ValueError: a bad `doctor_betas` (an HTTP 400 in `transformers serve`).
        RuntimeError: guidance asked for on a server whose doctors are not configured, or fail to load.
    """
    value = pop_request_betas(kwargs)
    if value is None:
        return type(model).generate(model, *args, **kwargs)
    try:
        num_doctors = len(engine_settings()["doctors"])
    except ValueError as error:
        raise RuntimeError(f"This server has no doctors to guide with: {error}") from None
    try:
        request_betas(value, num_doctors)  # refused before any doctor loads
        doctors = loaded_doctors(model.device, patient_tokenizer(kwargs.get("tokenizer")))
        betas = request_betas(value, num_doctors, doctors.recorded_betas)
    except ValueError as error:
        raise bad_request(str(error)) from None
    if betas is None:  # asked for no guidance (0)
        return type(model).generate(model, *args, **kwargs)
    processors = LogitsProcessorList(kwargs.pop("logits_processor", None) or [])
    with _generation_lock:
        doctors.processor.set_betas(betas)
        doctors.processor.set_attention_mask(kwargs.get("attention_mask"))
        processors.append(doctors.processor)
        return type(model).generate(model, *args, logits_processor=processors, **kwargs)


def patient_tokenizer(value) -> PreTrainedTokenizerBase | None:
    """The tokenizer in `generate`'s `tokenizer` argument: `transformers serve` passes the model's processor, a
    tokenizer for a text model, or a processor holding one; `None` when there is none."""
    for candidate in (value, getattr(value, "tokenizer", None)):
        if isinstance(candidate, PreTrainedTokenizerBase):
            return candidate
    return None


def warn_if_unconfigured() -> None:
    """Log a warning when `TFPO_HF_DOCTORS` is unset or malformed: the recipe calls it as transformers loads the
    model, so the server says at startup what its guided requests would fail on (unguided ones still work)."""
    try:
        engine_settings()
    except ValueError as error:
        logger.warning("tfpo_hf recipe: guided requests will fail: %s", error)


def pop_request_betas(kwargs: dict):
    """Take `doctor_betas` out of `generate`'s `kwargs` (an argument, or an attribute of a `generation_config`, which
    is then copied without it); `None` when it is not there."""
    value = kwargs.pop(REQUEST_ARG, None)
    config = kwargs.get("generation_config")
    if config is not None and hasattr(config, REQUEST_ARG):
        config = copy.deepcopy(config)
        from_config = getattr(config, REQUEST_ARG)
        delattr(config, REQUEST_ARG)
        kwargs["generation_config"] = config
        value = from_config if value is None else value
    return value


@dataclass(frozen=True)
class ServerDoctors:
    """The server's doctors, loaded once: their processor (given each call's betas) and the betas they record."""

    processor: DoctorLogitsProcessor
    recorded_betas: tuple[float, ...]


_lock = threading.Lock()  # loading the doctors
_generation_lock = threading.Lock()  # one guided generation at a time on the shared processor
_loaded: dict = {}  # one entry: (settings, device, tokenizer) -> ServerDoctors


def loaded_doctors(device, tokenizer=None) -> ServerDoctors:
    """The doctors of `TFPO_HF_DOCTORS`, checked against `tokenizer` and moved to `device`, loaded once per
    process (again only if the variable, the device or the tokenizer change).

    Raises:
        RuntimeError: when the doctors cannot be loaded (the error names the variable and the cause).
    """
    key = (os.environ.get(DOCTORS_ENV), str(device), id(tokenizer), len(tokenizer) if tokenizer is not None else None)
    with _lock:
        if key not in _loaded:
            _loaded.clear()  # one set of doctors in memory at a time
            _loaded[key] = _load(device, tokenizer)
        return _loaded[key]


def _load(device, tokenizer) -> ServerDoctors:
    try:
        settings = engine_settings()
        doctors = DoctorLogitsProcessor(
            settings["doctors"],
            alpha=settings.get("alpha"),
            tokenizer=tokenizer,
            references=settings.get("references"),
            **from_pretrained_kwargs(settings),
        )
    except (OSError, ValueError) as error:
        raise RuntimeError(f"Loading the doctors of {DOCTORS_ENV} failed: {error}") from error
    place_models(doctors.doctors, doctors.references, device)
    return ServerDoctors(doctors, tuple(doctors.betas))


def bad_request(message: str) -> ValueError:
    """The error a bad request raises: a `ValueError`, which `transformers serve` from 5.25 answers with 400 (it runs
    `generate` in a process of its own and sends a `ValueError`'s text back as a 400). Earlier versions run `generate`
    in the server's process and answer anything but FastAPI's `HTTPException` with 500, so where FastAPI is installed
    the error is also an `HTTPException(400)`."""
    error_class = _http_value_error()
    return ValueError(message) if error_class is None else error_class(status_code=400, detail=message)


@functools.cache
def _http_value_error():
    try:
        from starlette.exceptions import HTTPException
    except ImportError:
        return None

    class BadRequest(HTTPException, ValueError):
        """A `ValueError` that FastAPI answers with its status code and detail."""

        def __str__(self) -> str:
            return str(self.detail)

        def __reduce__(self):  # crosses a process as a plain ValueError
            return ValueError, (str(self.detail),)

    return BadRequest


def main(argv: list[str] | None = None) -> None:
    """`python -m tfpo_hf.serving.transformers_serve MODEL_DIR`: add the recipe to a local patient folder and print
    how to serve it."""
    parser = argparse.ArgumentParser(
        prog="python -m tfpo_hf.serving.transformers_serve",
        description="Add tfpo_hf's custom_generate recipe (LLMdoctor guidance) to a local model folder, for "
        "`transformers serve MODEL_DIR --trust-remote-code`.",
    )
    parser.add_argument("model_dir", help="the patient's local folder (config.json, weights, tokenizer)")
    parser.add_argument("--overwrite", action="store_true", help="replace another custom_generate/generate.py")
    arguments = parser.parse_args(argv)
    try:
        target = add_recipe(arguments.model_dir, overwrite=arguments.overwrite)
    except (FileNotFoundError, FileExistsError) as error:
        parser.exit(2, f"error: {error}\n")
    print(f"Added the recipe: {target}")
    print(
        "Serve it (the doctors are the server's, the betas each request's):\n"
        f'  {DOCTORS_ENV}=\'{{"doctors": ["path/to/doctor"]}}\' transformers serve {arguments.model_dir} '
        "--trust-remote-code\n"
        'Ask for guidance with "generation_config": "{\\"doctor_betas\\": 2.0}" in a request\'s body.'
    )


if __name__ == "__main__":
    main()
