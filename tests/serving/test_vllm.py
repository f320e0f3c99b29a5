"""The vLLM logits processor on the CPU build of vLLM (`make test-vllm`, its own environment): greedy tokens equal
`DoctorLogitsProcessor` in `generate()` on the embedded patient, for mixed batches, requests that arrive and finish
at different steps, and requests preempted for want of KV-cache blocks."""

import json
import os
import sys

import pytest
import torch


vllm = pytest.importorskip("vllm", reason="vLLM is installed by `make test-vllm` only")
os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "0")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine core in this process
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList  # noqa: E402
from vllm.exceptions import VLLMValidationError  # noqa: E402

from tfpo_hf import DoctorLogitsProcessor  # noqa: E402
from tfpo_hf.serving import GuidedRequests  # noqa: E402
from tfpo_hf.serving.settings import DOCTORS_ENV, REQUEST_ARG  # noqa: E402
from tfpo_hf.testing import tiny_lora_doctor  # noqa: E402
from tfpo_hf.utils.embedded_patient import default_patient_gguf_path  # noqa: E402
from tfpo_hf.utils.gguf_checkpoints import dense_checkpoint  # noqa: E402

from ..helpers.servers import post_json, running_server  # noqa: E402
from ..helpers.subprocesses import free_port, offline_env  # noqa: E402


pytestmark = pytest.mark.vllm
PROCESSOR = "tfpo_hf.serving.vllm:DoctorGuidanceLogitsProcessor"
QUESTIONS = ["Tell me about cats.", "Hi!", "What is 2+2?", "Name a colour.", "Write a haiku about rain."]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The embedded patient (float32), a LoRA doctor on it with random `lora_B` saved to disk, and its tokenizer."""
    patient_dir = str(dense_checkpoint(default_patient_gguf_path, "SmolLM2-135M-Instruct-dense", None))
    tokenizer = AutoTokenizer.from_pretrained(patient_dir)
    patient = AutoModelForCausalLM.from_pretrained(patient_dir, dtype=torch.float32).eval()
    doctor_dir = str(tmp_path_factory.mktemp("doctor"))
    tiny_lora_doctor(patient, seed=1).save_pretrained(doctor_dir)
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in QUESTIONS
    ]
    return patient_dir, patient, tokenizer, doctor_dir, prompts


def make_llm(setup, monkeypatch, **kwargs):
    patient_dir, _, _, doctor_dir, _ = setup
    settings = {"doctors": [doctor_dir], "references": "initial", "dtype": "float32"}
    monkeypatch.setenv(DOCTORS_ENV, json.dumps(settings))
    return vllm.LLM(patient_dir, dtype="float32", enforce_eager=True, logits_processors=[PROCESSOR], seed=0, **kwargs)


def params(max_tokens, beta):
    extra = {REQUEST_ARG: beta} if beta is not None else None
    return vllm.SamplingParams(max_tokens=max_tokens, temperature=0, extra_args=extra)


def generate_reference(setup, prompt, max_tokens, beta):
    _, patient, tokenizer, doctor_dir, _ = setup
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    processors = LogitsProcessorList()
    if beta:
        processors.append(DoctorLogitsProcessor(doctor_dir, betas=beta, tokenizer=tokenizer, references="initial"))
    out = patient.generate(ids, logits_processor=processors, max_new_tokens=max_tokens, do_sample=False)
    return out[0, ids.shape[-1] :].tolist()


def check(setup, runs, prompts=None):
    """`runs`: (prompt index, max_tokens, beta, vLLM's tokens). Each equals `generate()`; guidance changed some."""
    prompts = prompts or setup[4]
    changed = False
    for index, max_tokens, beta, tokens in runs:
        expected = generate_reference(setup, prompts[index], max_tokens, beta)
        assert tokens == expected, (index, beta)
        changed |= bool(beta) and expected != generate_reference(setup, prompts[index], max_tokens, None)
    assert changed


def test_mixed_batch_matches_generate(setup, monkeypatch):
    llm = make_llm(setup, monkeypatch, max_model_len=256)
    prompts = setup[4]
    requests = [(0, 10, 2.0), (1, 6, None), (2, 12, 0.5), (3, 8, 0), (4, 9, [2.0])]
    outputs = llm.generate([prompts[i] for i, _, _ in requests], [params(n, b) for _, n, b in requests])
    check(setup, [(i, n, b, list(o.outputs[0].token_ids)) for (i, n, b), o in zip(requests, outputs)])


def test_requests_arriving_late_and_preempted(setup, monkeypatch):
    """Requests (short raw prompts, one KV block each at first) join at different engine steps; a KV cache of 3
    blocks of 32 tokens cannot hold them once they grow, so the scheduler preempts some and resumes them later (the
    doctor prefills them again)."""
    resumed = []  # per guided request added to the doctors: whether it came back with output (after a preemption)
    add = GuidedRequests.add
    monkeypatch.setattr(
        GuidedRequests,
        "add",
        lambda self, key, prompt, output, betas: resumed.append(bool(output)) or add(self, key, prompt, output, betas),
    )
    llm = make_llm(setup, monkeypatch, max_model_len=64, num_gpu_blocks_override=3, block_size=32)
    engine = llm.llm_engine
    prompts = QUESTIONS
    requests = {"a": (0, 40, 2.0), "b": (1, 36, None), "c": (2, 40, 1.0), "d": (4, 30, 2.0)}
    arrivals = {0: ["a", "b"], 2: ["c"], 5: ["d"]}
    finished, step = {}, 0
    while len(finished) < len(requests):
        for name in arrivals.get(step, []):
            index, max_tokens, beta = requests[name]
            engine.add_request(name, prompts[index], params(max_tokens, beta))
        for output in engine.step():
            if output.finished:
                finished[output.request_id] = list(output.outputs[0].token_ids)
        step += 1
    check(setup, [(*requests[name], finished[name]) for name in requests], prompts)
    assert any(resumed), "no guided request was preempted: the test needs a smaller KV cache"


def test_bad_betas_are_refused_before_the_engine(setup, monkeypatch):
    llm = make_llm(setup, monkeypatch, max_model_len=128)
    for bad in ("strong", [1.0, 2.0], float("nan")):
        with pytest.raises(VLLMValidationError, match="doctor_betas"):  # HTTP 400 in the server
            llm.generate([setup[4][0]], params(4, bad))
    assert len(llm.generate([setup[4][0]], params(4, 1.0))[0].outputs[0].token_ids) == 4  # the engine still runs


def test_openai_server_guides_a_request_and_refuses_a_bad_beta(setup, tmp_path):
    """`python -m vllm.entrypoints.openai.api_server --logits-processors ...` on loopback (the CPU wheel's `vllm`
    console script cannot start): `vllm_xargs` guides a completion exactly as `generate()` does; a bad beta is an
    HTTP 400 naming `doctor_betas`, and the server goes on serving."""
    patient_dir, _, _, doctor_dir, prompts = setup
    port = free_port()
    settings = {"doctors": [doctor_dir], "references": "initial", "dtype": "float32"}
    env = {**offline_env(), DOCTORS_ENV: json.dumps(settings), "OMP_NUM_THREADS": "2"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING")  # the server's engine core in a process of its own, as deployed
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", patient_dir]
    command += ["--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--enforce-eager"]
    command += ["--max-model-len", "256", "--seed", "0", "--logits-processors", PROCESSOR]
    url = f"http://127.0.0.1:{port}"
    with running_server(command, env, f"{url}/health", tmp_path / "server.log", timeout=600):

        def complete(betas, max_tokens=8):
            body = {"model": patient_dir, "prompt": prompts[0], "max_tokens": max_tokens, "temperature": 0}
            body |= {"return_token_ids": True} | ({"vllm_xargs": {REQUEST_ARG: betas}} if betas is not None else {})
            return post_json(f"{url}/v1/completions", body)

        status, guided = complete(2.0)
        assert status == 200, guided
        status, plain = complete(None)
        assert status == 200, plain
        check(setup, [(0, 8, 2.0, guided["choices"][0]["token_ids"]), (0, 8, None, plain["choices"][0]["token_ids"])])
        for bad in ("strong", [1.0, 2.0]):
            status, error = complete(bad)
            assert status == 400 and REQUEST_ARG in json.dumps(error), (bad, status, error)
        assert complete([2.0])[1]["choices"][0]["token_ids"] == guided["choices"][0]["token_ids"]
