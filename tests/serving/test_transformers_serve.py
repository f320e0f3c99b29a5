"""`transformers serve` with tfpo_hf's `custom_generate` recipe, on loopback: a tiny patient folder with the recipe,
served with `--trust-remote-code` and the doctors in `TFPO_HF_DOCTORS`. Guided requests (completion and chat)
must give the greedy tokens of `generate()` with `DoctorLogitsProcessor`, unguided ones the patient's own; a bad
beta is refused with a 4xx naming `doctor_betas`, and a request cannot choose a recipe of its own.

The patient's tokenizer here is word-level (`w3 w4 ...`, one word per id), so the served text decodes losslessly:
equal texts mean equal tokens (the 3 special tokens aside, which decode to nothing)."""

import importlib.util
import json
import sys

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList, PreTrainedTokenizerFast

from tfpo_hf import DoctorLogitsProcessor
from tfpo_hf.serving.settings import DOCTORS_ENV
from tfpo_hf.serving.transformers_serve import add_recipe
from tfpo_hf.testing import SPECIAL_TOKENS, chatml_tokenizer, tiny_causal_lm

from ..helpers.servers import post_json, running_server
from ..helpers.subprocesses import free_port, offline_env


SERVING_PACKAGES = ("fastapi", "uvicorn", "openai", "pydantic")
MISSING = [name for name in SERVING_PACKAGES if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"transformers serve needs the serving extra ({', '.join(MISSING)} missing): pip install -e '.[serve]'",
)

NEW_TOKENS = 8
BETA = 2.0
PROMPT = "w10 w20 w30 w40"
STARTUP_SECONDS = 180


def word_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny tokenizer's 3 special tokens, then the words `w3` ... `w258` (ids 3 ... 258); other words are id 0."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({f"w{index}": index for index in range(len(SPECIAL_TOKENS), 259)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS[0]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return chatml_tokenizer(backend)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A patient folder (weights, word-level tokenizer, the recipe) and a doctor folder."""
    root = tmp_path_factory.mktemp("transformers_serve")
    patient_dir, doctor_dir = root / "patient", root / "doctor"
    tiny_causal_lm(seed=0).save_pretrained(patient_dir)
    word_tokenizer().save_pretrained(patient_dir)
    tiny_causal_lm(seed=1).save_pretrained(doctor_dir)
    add_recipe(patient_dir)
    return root, patient_dir, doctor_dir


@pytest.fixture(scope="module")
def server(folders):
    """`transformers serve PATIENT --trust-remote-code` on 127.0.0.1, started once for the module and always stopped
    by its PID (`running_server`). Yields its base URL and the served model's name."""
    root, patient_dir, doctor_dir = folders
    port = free_port()
    env = {
        **offline_env(),
        DOCTORS_ENV: json.dumps({"doctors": [str(doctor_dir)], "references": "none"}),
        "HF_MODULES_CACHE": str(root / "modules"),  # where transformers copies the recipe's generate.py
    }
    command = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(patient_dir), "--trust-remote-code"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--dtype", "float32"]
    url = f"http://127.0.0.1:{port}"
    with running_server(command, env, f"{url}/health", root / "server.log", timeout=STARTUP_SECONDS):
        yield url, str(patient_dir)


@pytest.fixture(scope="module")
def reference(folders):
    """Greedy `generate()` on the same patient and tokenizer: `reference(input_ids, beta)` -> the new text."""
    _, patient_dir, doctor_dir = folders
    patient = AutoModelForCausalLM.from_pretrained(patient_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(patient_dir)

    def generate(input_ids, beta=None) -> str:
        processors = LogitsProcessorList()
        if beta is not None:
            processors.append(DoctorLogitsProcessor(str(doctor_dir), betas=beta, tokenizer=tokenizer))
        out = patient.generate(
            input_ids,
            attention_mask=input_ids.new_ones(input_ids.shape),
            logits_processor=processors,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        return tokenizer.decode(out[0, input_ids.shape[-1] :], skip_special_tokens=True)

    generate.tokenizer = tokenizer
    return generate


def completion(server, **generation_config) -> tuple[int, dict]:
    url, model = server
    settings = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False, **generation_config}
    body = {"model": model, "prompt": PROMPT, "max_tokens": NEW_TOKENS, "temperature": 0}
    return post_json(f"{url}/v1/completions", {**body, "generation_config": json.dumps(settings)})


def test_guided_and_unguided_completions_equal_generate(server, reference):
    prompt_ids = reference.tokenizer(PROMPT, return_tensors="pt").input_ids
    guided_expected, plain_expected = reference(prompt_ids, BETA), reference(prompt_ids)
    assert guided_expected != plain_expected  # guidance changes the tokens, so the comparison can fail

    status, guided = completion(server, doctor_betas=BETA)
    assert status == 200, guided
    assert guided["choices"][0]["text"].strip() == guided_expected

    status, plain = completion(server)
    assert status == 200, plain
    assert plain["choices"][0]["text"].strip() == plain_expected
    status, zero = completion(server, doctor_betas=0)  # beta 0: not guided
    assert status == 200, zero
    assert zero["choices"][0]["text"].strip() == plain_expected


def test_guided_chat_equals_generate(server, reference):
    url, model = server
    messages = [{"role": "user", "content": "w5 w6 w7"}]
    prompt_ids = reference.tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )["input_ids"]
    settings = {"max_new_tokens": NEW_TOKENS, "min_new_tokens": NEW_TOKENS, "do_sample": False, "doctor_betas": BETA}
    body = {"model": model, "messages": messages, "max_tokens": NEW_TOKENS, "temperature": 0}
    status, answer = post_json(f"{url}/v1/chat/completions", {**body, "generation_config": json.dumps(settings)})
    assert status == 200, answer
    assert answer["choices"][0]["message"]["content"].strip() == reference(prompt_ids, BETA)


@pytest.mark.parametrize("betas", ["strong", [1.0, 2.0], float("nan")], ids=["string", "two-for-one-doctor", "nan"])
def test_bad_betas_are_refused_with_a_4xx_naming_doctor_betas(server, betas):
    status, answer = completion(server, doctor_betas=betas)
    assert 400 <= status < 500, (status, answer)
    assert "doctor_betas" in json.dumps(answer), answer


def test_a_request_cannot_run_a_recipe_of_its_choosing(server, reference, tmp_path):
    """`custom_generate` naming another folder in a request: refused (transformers 5.25 on: `trust_remote_code` is
    needed, which a request cannot set) or ignored (earlier versions keep it as an unused generation setting); its
    code never runs."""
    marker = tmp_path / "ran"
    recipe = tmp_path / "other" / "custom_generate"
    recipe.mkdir(parents=True)
    (recipe / "generate.py").write_text(
        f"from pathlib import Path\n\n\ndef generate(*args, model, **kwargs):\n    Path({str(marker)!r}).touch()\n"
    )
    status, answer = completion(server, custom_generate=str(recipe.parent))
    assert not marker.exists()
    if status == 200:
        prompt_ids = reference.tokenizer(PROMPT, return_tensors="pt").input_ids
        assert answer["choices"][0]["text"].strip() == reference(prompt_ids)
    else:
        assert 400 <= status < 500 and "trust_remote_code" in json.dumps(answer), (status, answer)
