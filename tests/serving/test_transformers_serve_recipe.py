"""The `transformers serve` recipe without a server: the engine's settings, adding the recipe to a model folder, and
a model loaded with it (`trust_remote_code=True`, as the server loads it) generating guided and plain tokens exactly
as `generate()` with and without `DoctorLogitsProcessor`. The loopback test is test_transformers_serve.py."""

import json
import pickle

import pytest
from transformers import AutoModelForCausalLM, LogitsProcessorList

from tfpo_hf import DoctorLogitsProcessor
from tfpo_hf.serving import transformers_serve
from tfpo_hf.serving.settings import DOCTORS_ENV, engine_settings, from_pretrained_kwargs
from tfpo_hf.serving.transformers_serve import RECIPE, add_recipe, bad_request, pop_request_betas
from tfpo_hf.testing import tiny_causal_lm


NEW_TOKENS = 6


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "is not set"),
        ("{doctors", "is not valid JSON"),
        ('["a"]', "must be a JSON object"),
        ('{"doctors": "a", "beta": 2}', "must be a JSON object"),
    ],
)
def test_bad_engine_settings_name_the_variable(monkeypatch, raw, message):
    monkeypatch.delenv(DOCTORS_ENV, raising=False)
    if raw is not None:
        monkeypatch.setenv(DOCTORS_ENV, raw)
    with pytest.raises(ValueError, match=f"{DOCTORS_ENV}.*{message}|{message}.*{DOCTORS_ENV}"):
        engine_settings()


def test_engine_settings_and_dtype(monkeypatch):
    monkeypatch.setenv(DOCTORS_ENV, json.dumps({"doctors": "d", "alpha": 1.0}))
    assert engine_settings() == {"doctors": ["d"], "alpha": 1.0}
    assert from_pretrained_kwargs({"doctors": ["d"]}) == {}
    with pytest.raises(ValueError, match="dtype='float33' is not a torch dtype"):
        from_pretrained_kwargs({"doctors": ["d"], "dtype": "float33"})


def test_add_recipe(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a local model folder"):
        add_recipe(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    target = add_recipe(tmp_path)
    assert (target / "generate.py").read_text() == (RECIPE / "generate.py").read_text()
    (target / "generate.py").write_text("from tfpo_hf.serving.transformers_serve import guided_generate\n")
    assert add_recipe(tmp_path) == target  # another version of the recipe: replaced
    assert (target / "generate.py").read_text() == (RECIPE / "generate.py").read_text()
    (target / "generate.py").write_text("def generate(*args, model, **kwargs): ...\n")
    with pytest.raises(FileExistsError, match="overwrite"):
        add_recipe(tmp_path)
    add_recipe(tmp_path, overwrite=True)
    assert (target / "generate.py").read_text() == (RECIPE / "generate.py").read_text()


def test_request_betas_from_arguments_or_generation_config():
    from transformers import GenerationConfig

    kwargs = {"doctor_betas": 2.0, "max_new_tokens": 3}
    assert pop_request_betas(kwargs) == 2.0 and kwargs == {"max_new_tokens": 3}
    config = GenerationConfig(max_new_tokens=3, doctor_betas=[1.0, 0.5])  # transformers serve before 5.25
    kwargs = {"generation_config": config}
    assert pop_request_betas(kwargs) == [1.0, 0.5]
    assert not hasattr(kwargs["generation_config"], "doctor_betas") and hasattr(config, "doctor_betas")
    assert pop_request_betas({"max_new_tokens": 3}) is None


def test_bad_request_is_a_value_error_with_its_message():
    error = bad_request("doctor_betas='x': bad")
    assert isinstance(error, ValueError) and str(error) == "doctor_betas='x': bad"
    assert getattr(error, "status_code", 400) == 400
    crossed = pickle.loads(pickle.dumps(error))
    assert isinstance(crossed, ValueError) and str(crossed) == str(error)


@pytest.fixture(scope="module")
def served(tmp_path_factory, tokenizer):
    """A patient folder with the recipe, loaded as the server loads it, and a saved doctor."""
    root = tmp_path_factory.mktemp("recipe")
    tiny_causal_lm(seed=0).save_pretrained(root / "patient")
    tokenizer.save_pretrained(root / "patient")
    tiny_causal_lm(seed=1).save_pretrained(root / "doctor")
    add_recipe(root / "patient")
    with pytest.MonkeyPatch.context() as patch:  # transformers copies the recipe there, not into ~/.cache
        patch.setattr("transformers.dynamic_module_utils.HF_MODULES_CACHE", str(root / "modules"))
        model = AutoModelForCausalLM.from_pretrained(root / "patient", trust_remote_code=True)
    return model.eval(), str(root / "doctor")


def greedy(model, ids, **kwargs):
    out = model.generate(ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, **kwargs)
    return out[0, ids.shape[-1] :].tolist()


def test_loaded_recipe_guides_as_the_processor_does(served, tokenizer, monkeypatch):
    model, doctor_path = served
    monkeypatch.setenv(DOCTORS_ENV, json.dumps({"doctors": [doctor_path]}))
    ids = tokenizer("Tell me about cats.", return_tensors="pt").input_ids
    plain = greedy(model, ids, pad_token_id=tokenizer.pad_token_id)
    processor = DoctorLogitsProcessor(doctor_path, betas=2.0, tokenizer=tokenizer)
    expected = greedy(model, ids, logits_processor=LogitsProcessorList([processor]), pad_token_id=2)
    assert expected != plain
    assert greedy(model, ids, doctor_betas=2.0, tokenizer=tokenizer, pad_token_id=2) == expected
    first = transformers_serve.loaded_doctors(model.device, tokenizer)
    assert greedy(model, ids, doctor_betas=2.0, tokenizer=tokenizer, pad_token_id=2) == expected  # again: same caches
    assert transformers_serve.loaded_doctors(model.device, tokenizer) is first  # loaded once
    recorded = DoctorLogitsProcessor(doctor_path, tokenizer=tokenizer)  # the betas the doctor records
    expected_recorded = greedy(model, ids, logits_processor=LogitsProcessorList([recorded]), pad_token_id=2)
    assert recorded.betas != [2.0] and expected_recorded != expected
    assert greedy(model, ids, doctor_betas="default", tokenizer=tokenizer, pad_token_id=2) == expected_recorded
    assert greedy(model, ids, doctor_betas=0, tokenizer=tokenizer, pad_token_id=2) == plain
    assert greedy(model, ids, pad_token_id=2) == plain
    with pytest.raises(ValueError, match="doctor_betas='strong'"):
        greedy(model, ids, doctor_betas="strong", tokenizer=tokenizer)


def test_guidance_without_configured_doctors_is_a_server_error(served, tokenizer, monkeypatch):
    model, _ = served
    monkeypatch.delenv(DOCTORS_ENV, raising=False)
    ids = tokenizer("Hi!", return_tensors="pt").input_ids
    with pytest.raises(RuntimeError, match=f"no doctors to guide with.*{DOCTORS_ENV} is not set"):
        greedy(model, ids, doctor_betas=2.0, tokenizer=tokenizer)
    assert len(greedy(model, ids, pad_token_id=2)) == NEW_TOKENS  # unguided requests still work
    monkeypatch.setenv(DOCTORS_ENV, json.dumps({"doctors": ["/no/such/doctor"]}))
    with pytest.raises(RuntimeError, match=f"Loading the doctors of {DOCTORS_ENV} failed"):
        greedy(model, ids, doctor_betas=2.0, tokenizer=tokenizer)
