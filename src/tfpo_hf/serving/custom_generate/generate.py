"""LLMdoctor guidance for `transformers serve`: tfpo_hf's `custom_generate` recipe.

In a model folder as `custom_generate/generate.py`, this replaces the model's `generate()` when the model is loaded
with `trust_remote_code=True` (`transformers serve MODEL_DIR --trust-remote-code`). The doctors are the server's
(`TFPO_HF_DOCTORS`); a request asks for guidance with `"generation_config": "{\"doctor_betas\": 2.0}"`.
Requests run one at a time (sequential `generate()`). The code lives in the installed `tfpo_hf` package
(`tfpo_hf.serving.transformers_serve.guided_generate`), so this file stays the same across its versions.
"""

from tfpo_hf.serving.transformers_serve import guided_generate, warn_if_unconfigured


warn_if_unconfigured()  # as the server loads the model: say now if guided requests cannot work


def generate(*args, model, **kwargs):
    """`model.generate(*args, **kwargs)`, guided by the server's doctors when `kwargs` hold `doctor_betas`.

    `model` is keyword-only: transformers binds it (`functools.partial(generate, model=model)`), so a positional
    `input_ids` still works.
    """
    return guided_generate(*args, model=model, **kwargs)
