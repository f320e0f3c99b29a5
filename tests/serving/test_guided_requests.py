"""`GuidedRequests`, the serving core, in a simulated continuous-batching engine: requests join, leave, are preempted
and resumed at different steps, each with betas of its own; every request's greedy tokens must equal those of
`generate()` with `DoctorLogitsProcessor` for that request alone."""

import pytest
import torch
from transformers import LogitsProcessorList

from tfpo_hf import DoctorLogitsProcessor
from tfpo_hf.serving import GuidedRequests
from tfpo_hf.serving.guided_requests import request_betas
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor


PROMPTS = ["Tell me about cats.", "Hi!", "A longer prompt about the weather today", "Why?", "Count: 1 2 3"]
NEW_TOKENS = 6


def engine_greedy(patient, tokenizer, core, schedule, preempt=None):
    """Greedy decoding of several requests in one batch that changes: request i joins at step `schedule[i][0]` with
    betas `schedule[i][1]`; `preempt` = (request, step, steps away) removes one request and adds it back later with
    its output so far. The patient runs without a cache (its logits are exact); the rows are permuted every step, as
    an engine moves requests in its batch. Returns each request's new tokens."""
    prompts = [tokenizer(p, add_special_tokens=False).input_ids for p in PROMPTS[: len(schedule)]]
    outputs = [[] for _ in schedule]
    active: list[int] = []
    step = 0
    generator = torch.Generator().manual_seed(0)
    while any(len(o) < NEW_TOKENS for o in outputs):
        for request, (start, betas) in enumerate(schedule):
            if step == start:
                core.add(request, prompts[request], outputs[request], betas)
                active.append(request)
        if preempt is not None:
            request, at, away = preempt
            if step == at:
                core.remove(request)
                active.remove(request)
            if step == at + away:
                core.add(request, prompts[request], outputs[request], schedule[request][1])
                active.append(request)
        order = [active[i] for i in torch.randperm(len(active), generator=generator).tolist()]
        if order:
            logits = torch.stack([patient(torch.tensor([prompts[r] + outputs[r]])).logits[0, -1] for r in order])
            guided = core.apply(logits, dict(enumerate(order)))
            for row, request in enumerate(order):
                outputs[request].append(int(guided[row].argmax()))
                if len(outputs[request]) == NEW_TOKENS:
                    core.remove(request)
                    active.remove(request)
        step += 1
    return outputs


def generate_alone(patient, tokenizer, doctors, betas, prompt, **processor_kwargs):
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    processors = LogitsProcessorList()
    if betas is not None:
        processors.append(DoctorLogitsProcessor(doctors, betas=betas, tokenizer=tokenizer, **processor_kwargs))
    out = patient.generate(
        ids,
        logits_processor=processors,
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        min_new_tokens=NEW_TOKENS,
        pad_token_id=tokenizer.pad_token_id,
    )
    return out[0, ids.shape[-1] :].tolist()


def assert_matches_generate(tokens, patient, tokenizer, doctors, schedule, **processor_kwargs):
    """Each request's tokens equal `generate()` with the processor at its betas, and guidance changed some of them
    (so the comparison could fail)."""
    changed = False
    for request, (_, betas) in enumerate(schedule):
        betas = betas or None
        expected = generate_alone(patient, tokenizer, doctors, betas, PROMPTS[request], **processor_kwargs)
        assert tokens[request] == expected, request
        changed |= expected != generate_alone(patient, tokenizer, doctors, None, PROMPTS[request])
    assert changed


@pytest.fixture(scope="module")
def models():
    patient = tiny_causal_lm(seed=0).eval()
    small = tiny_causal_lm(seed=3, hidden_size=32, num_hidden_layers=1).eval()
    return patient, small


SCHEDULES = {
    "joins at different steps, two betas, plain rows": [(0, 2.0), (0, None), (2, 0.5), (3, 2.0), (4, 0)],
    "all at once": [(0, 1.0), (0, 3.0), (0, 1.0)],
}


@pytest.mark.parametrize("schedule", list(SCHEDULES.values()), ids=list(SCHEDULES))
def test_full_doctor_matches_generate_per_request(models, tokenizer, schedule):
    patient, small = models
    core = GuidedRequests(small, tokenizer=tokenizer, references="none")
    tokens = engine_greedy(patient, tokenizer, core, schedule)
    assert_matches_generate(tokens, patient, tokenizer, small, schedule, references="none")


def test_lora_doctor_with_its_base_and_a_preemption(models, tokenizer):
    patient, small = models
    doctor = tiny_lora_doctor(small, seed=5)
    core = GuidedRequests(doctor, tokenizer=tokenizer, references="initial")
    schedule = [(0, 2.0), (1, None), (1, 4.0), (2, 1.0)]
    tokens = engine_greedy(patient, tokenizer, core, schedule, preempt=(0, 2, 2))
    assert core.resumed == 1
    assert core.prefills == 4  # three guided requests, one of them twice; the plain one never
    assert_matches_generate(tokens, patient, tokenizer, doctor, schedule, references="initial")


def test_two_doctors_with_weights_per_request(models, tokenizer):
    patient, small = models
    other = tiny_causal_lm(seed=7).eval()
    core = GuidedRequests([small, other], tokenizer=tokenizer, references=["none", "patient"])
    schedule = [(0, [1.0, 0.0]), (0, [0.0, 2.0]), (1, [1.5, -0.5]), (2, None)]
    tokens = engine_greedy(patient, tokenizer, core, schedule)
    assert core.prefills == 4  # requests 0 and 1 by one doctor each, request 2 by both; the plain one never
    assert_matches_generate(tokens, patient, tokenizer, [small, other], schedule, references=["none", "patient"])


def test_unguided_requests_cost_no_doctor_work(models, tokenizer):
    patient, small = models
    core = GuidedRequests(small, tokenizer=tokenizer, references="none")
    calls = []
    small.register_forward_hook(lambda *args: calls.append(1))
    engine_greedy(patient, tokenizer, core, [(0, None), (1, 0), (1, [0.0])])
    assert calls == [] and core.prefills == 0


@pytest.mark.parametrize("value", ["strong", float("nan"), [], [1.0, "x"], True, float("inf")])
def test_bad_request_betas_name_what_is_accepted(value):
    with pytest.raises(ValueError, match="doctor_betas=.*give a finite number"):
        request_betas(value, 1)


def test_wrong_number_of_betas_is_refused_when_added(models, tokenizer):
    _, small = models
    core = GuidedRequests(small, tokenizer=tokenizer, references="none")
    with pytest.raises(ValueError):
        core.add(0, [1, 2], [], [1.0, 2.0])
    assert core.requests == {}
