"""Bad or hostile input to stage 3 (`DoctorLogitsProcessor`, `GuidedModel`): weights, vocabularies, NaN logits,
attention masks, arguments of the wrong kind, missing paths, pickled checkpoints and generations at once in two
threads; each case asserts the exception and the key words of its message (the problem and the fix), or the
warning, or that the input works and gives the right result."""

import copy
import math
import os
import re
import threading

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LogitsProcessorList

from tfpo_hf import DoctorLogitsProcessor, DoctorModel, GuidedModel
from tfpo_hf.guidance.loading import load_causal_lm
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor, tiny_tokenizer

from ..helpers.disk import pickle_weights, spy_on_torch_load
from ..helpers.hub import fake_hub_repo, forbid_hub_calls


# ---------------------------------------------------------------------------------------------- the processor
def prompts(tokenizer, texts=("Tell me about cats.", "Hi!")):
    return tokenizer(list(texts), padding=True, return_tensors="pt")


@pytest.mark.parametrize("betas", [math.nan, math.inf, -math.inf, "2", True, None, [1.0, math.nan]])
def test_processor_weights_must_be_finite_real_numbers(betas):
    doctors = [tiny_causal_lm(seed=1), tiny_causal_lm(seed=2)]
    if betas is None:
        with pytest.raises(ValueError, match="alpha must be a finite real number"):
            DoctorLogitsProcessor(doctors, betas=1.0, alpha=math.nan)
        return
    with pytest.raises(ValueError, match="must be a finite real number"):
        DoctorLogitsProcessor(doctors, betas=betas)


def test_processor_wrong_number_of_betas_says_one_or_one_per_doctor():
    with pytest.raises(ValueError, match="one beta, or one per doctor"):
        DoctorLogitsProcessor([tiny_causal_lm(seed=1)], betas=[1.0, 2.0])


def test_processor_set_betas_refuses_nan_and_keeps_the_old_weights():
    processor = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0)
    with pytest.raises(ValueError, match="finite"):
        processor.set_betas(float("nan"))
    assert processor.betas == [1.0]


def test_doctor_with_nan_logits_raises_naming_doctor_and_step(patient, tokenizer):
    broken = tiny_causal_lm(seed=1)
    with torch.no_grad():
        broken.lm_head.weight[7] = math.nan
    processor = DoctorLogitsProcessor(broken, betas=1.0, tokenizer=tokenizer)
    inputs = prompts(tokenizer)
    with pytest.raises(ValueError, match=r"NaN or \+inf logits at sequence length"):
        patient.generate(
            **inputs,
            logits_processor=LogitsProcessorList([processor]),
            max_new_tokens=3,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )


def test_prompt_ids_outside_the_doctors_vocabulary_raise_at_the_first_call(patient):
    small = tiny_causal_lm(vocab_size=50, seed=1)
    processor = DoctorLogitsProcessor(small, betas=1.0, pad_token_id=2)
    input_ids = torch.tensor([[3, 120, 7]])
    with pytest.raises(ValueError, match="token id 120, outside the vocabulary"):
        patient.generate(
            input_ids,
            logits_processor=LogitsProcessorList([processor]),
            max_new_tokens=2,
            do_sample=False,
            pad_token_id=2,
        )


def test_a_mask_applies_to_one_generation_only(patient, tokenizer):
    first, second = prompts(tokenizer), prompts(tokenizer, ("Why?", "A longer question here"))
    processor = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0, attention_mask=first["attention_mask"])
    run = dict(
        logits_processor=LogitsProcessorList([processor]),
        max_new_tokens=2,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    patient.generate(**first, **run)
    with pytest.raises(ValueError, match="earlier `generate` call"):
        patient.generate(**second, **run)
    processor.set_attention_mask(second["attention_mask"])
    patient.generate(**second, **run)  # works once the new mask is given


def test_processor_without_a_mask_serves_many_batches(patient, tokenizer):
    processor = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0, tokenizer=tokenizer)
    for texts in (("a", "bb"), ("ccc",)):
        out = patient.generate(
            **prompts(tokenizer, texts),
            logits_processor=LogitsProcessorList([processor]),
            max_new_tokens=2,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        assert out.shape[0] == len(texts)


def test_processor_needs_at_least_one_doctor():
    with pytest.raises(ValueError, match="`doctors` is empty"):
        DoctorLogitsProcessor([])


def test_processor_references_count_must_match():
    with pytest.raises(ValueError, match="2 references for 1 doctors"):
        DoctorLogitsProcessor(tiny_causal_lm(seed=1), references=["patient", "patient"])


def test_base_reference_needs_a_lora_doctor():
    with pytest.raises(ValueError, match="no PEFT adapter"):
        DoctorLogitsProcessor(tiny_causal_lm(seed=1), references="base")


def test_doctor_smaller_than_the_tokenizer_is_refused(tokenizer):
    with pytest.raises(ValueError, match="fewer than the"):
        DoctorLogitsProcessor(tiny_causal_lm(vocab_size=100, seed=1), tokenizer=tokenizer)


def test_guided_model_refuses_a_full_weight_doctor_and_nan_weights(patient):
    with pytest.raises(ValueError, match="not a LoRA adapter.*DoctorLogitsProcessor"):
        GuidedModel(copy.deepcopy(patient), tiny_causal_lm(seed=1))
    base = copy.deepcopy(patient)
    with pytest.raises(ValueError, match="finite"):
        GuidedModel(base, tiny_lora_doctor(base, seed=1), betas=math.inf)


# ---------------------------------------------------------------------------------------------- wrong kinds
@pytest.mark.parametrize("doctors", [None, 3, 2.5, object()])
def test_processor_doctors_of_the_wrong_kind_are_named(doctors):
    with pytest.raises(ValueError, match=r"`doctors` must be a causal LM, a `DoctorModel`, or a local path .*got"):
        DoctorLogitsProcessor(doctors)


@pytest.mark.parametrize("doctors, argument", [("", "doctors"), ([""], r"doctors\[0\]")])
def test_an_empty_doctor_name_is_named_not_taken_for_a_missing_path(doctors, argument, monkeypatch):
    forbid_hub_calls(monkeypatch)
    with pytest.raises(ValueError, match=rf"`{argument}` must be a local path or a Hub repo id .*got ''"):
        DoctorLogitsProcessor(doctors)


def test_processor_refuses_a_tokenizer_as_doctor_and_names_the_list_entry(tokenizer):
    with pytest.raises(ValueError, match=r"`doctors` must be .*got a \w+"):
        DoctorLogitsProcessor(tokenizer)
    with pytest.raises(ValueError, match=r"`doctors\[1\]` must be .*got None"):
        DoctorLogitsProcessor([tiny_causal_lm(seed=1), None])


def test_processor_references_of_the_wrong_kind_are_named(tokenizer):
    with pytest.raises(ValueError, match=r"`references` must be .*'patient'.*got 3"):
        DoctorLogitsProcessor(tiny_causal_lm(seed=1), references=3)
    with pytest.raises(ValueError, match=r"`references\[0\]` must be .*got a \w+"):
        DoctorLogitsProcessor(tiny_causal_lm(seed=1), references=[tokenizer])


@pytest.mark.parametrize("tokenizer_argument", ["HuggingFaceTB/SmolLM2-135M-Instruct", 3])
def test_processor_tokenizer_of_the_wrong_kind_is_named(tokenizer_argument):
    with pytest.raises(ValueError, match=r"`tokenizer` must be the patient's tokenizer .*AutoTokenizer"):
        DoctorLogitsProcessor(tiny_causal_lm(seed=1), tokenizer=tokenizer_argument)


def test_processor_empty_reference_name_is_named():
    with pytest.raises(ValueError, match=r"`references\[0\]` must be a local path or a Hub repo id .*got ''"):
        DoctorLogitsProcessor(tiny_causal_lm(seed=1), references="")


def test_guided_model_needs_a_patient_and_lora_doctors(patient):
    doctor = tiny_lora_doctor(copy.deepcopy(patient), seed=1)
    with pytest.raises(ValueError, match=r"`patient` must be a transformers causal LM .*got None"):
        GuidedModel(None, doctor)
    with pytest.raises(ValueError, match=r"`doctors` must be a LoRA doctor .*got None"):
        GuidedModel(copy.deepcopy(patient), None)
    with pytest.raises(ValueError, match=r"`doctors\[1\]` must be a LoRA doctor .*got 3"):
        GuidedModel(copy.deepcopy(patient), [doctor, 3])


# ---------------------------------------------------------------------------------------------- weights
NUMBERS = [torch.tensor(2.0), np.float64(2.0), np.float32(2.0), np.int64(2), np.array(2.0)]


@pytest.mark.parametrize("number", NUMBERS, ids=lambda number: type(number).__name__)
def test_weights_given_as_numpy_or_0d_tensors_are_the_numbers(number, patient):
    processor = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=number, alpha=number)
    assert (processor.betas, processor.alpha) == ([2.0], 2.0)
    processor.set_betas([number])
    assert processor.betas == [2.0] and type(processor.betas[0]) is float
    base = copy.deepcopy(patient)
    guided = GuidedModel(base, tiny_lora_doctor(base, seed=1), betas=number, alpha=number)
    assert (guided.betas, guided.alpha) == ([2.0], 2.0)


@pytest.mark.parametrize("betas", ["2.0", ["2.0"], [1.0, "2.0"], b"2"])
def test_weights_given_as_strings_are_refused_naming_betas(betas, patient):
    doctors = [tiny_causal_lm(seed=1), tiny_causal_lm(seed=2)]
    with pytest.raises(ValueError, match=r"betas(\[\d\])? must be a finite real number.*got"):
        DoctorLogitsProcessor(doctors, betas=betas)
    processor = DoctorLogitsProcessor(doctors, betas=1.0)
    with pytest.raises(ValueError, match=r"betas(\[\d\])? must be a finite real number"):
        processor.set_betas(betas)
    assert processor.betas == [1.0, 1.0]


def test_alpha_given_as_a_string_is_refused_naming_alpha(patient):
    with pytest.raises(ValueError, match=r"alpha must be a finite real number .*got '2.0'"):
        DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0, alpha="2.0")
    base = copy.deepcopy(patient)
    with pytest.raises(ValueError, match=r"alpha must be a finite real number .*got '2.0'"):
        GuidedModel(base, tiny_lora_doctor(base, seed=1), betas=1.0, alpha="2.0")


# ---------------------------------------------------------------------------------------------- paths
MISSING_PATHS = ["./missing-doctor", "~/missing", "/abs/missing", "missing/sub/dir", "C:\\missing-doctor"]


@pytest.mark.parametrize("path", MISSING_PATHS)
def test_missing_local_doctors_and_references_say_they_do_not_exist(path, patient, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    forbid_hub_calls(monkeypatch)
    message = rf"path {re.escape(os.path.expanduser(path))} does not exist"
    with pytest.raises(FileNotFoundError, match=message):
        DoctorLogitsProcessor(path)
    with pytest.raises(FileNotFoundError, match=message):
        DoctorLogitsProcessor(tiny_causal_lm(seed=1), references=path)
    with pytest.raises(FileNotFoundError, match=message):
        GuidedModel(copy.deepcopy(patient), path)
    with pytest.raises(FileNotFoundError, match=message):
        load_causal_lm(path)


def test_a_recorded_initial_model_that_is_missing_says_it_does_not_exist(tmp_path, monkeypatch):
    recorded = {"guidance": "ratio", "guidance_reference": "initial", "initial_name_or_path": "./missing-initial"}
    DoctorModel(tiny_causal_lm(seed=1), doctor_config=recorded).save_pretrained(tmp_path / "doctor")
    monkeypatch.chdir(tmp_path)
    forbid_hub_calls(monkeypatch)
    with pytest.warns(UserWarning, match="'./missing-initial'"):
        with pytest.raises(
            ValueError, match=r"path ./missing-initial does not exist.*pass that model as `references=`"
        ):
            DoctorLogitsProcessor("./doctor")


def test_doctors_under_home_load_with_tilde(patient_path, saved_patient, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    tiny_causal_lm(seed=1).save_pretrained(tmp_path / "doctor")
    tiny_lora_doctor(saved_patient, seed=1).save_pretrained(tmp_path / "lora")
    saved = tiny_tokenizer()
    saved.add_tokens(["<extra>"])
    saved.save_pretrained(tmp_path / "doctor")
    # its saved tokenizer is read: another tokenizer, 260 tokens for the doctor's 259 rows
    with pytest.raises(ValueError, match="fewer than the 260 tokens of its tokenizer"):
        DoctorLogitsProcessor("~/doctor", tokenizer=tiny_tokenizer())
    assert DoctorLogitsProcessor("~/doctor", references="~/doctor").betas == [0.5]
    base = AutoModelForCausalLM.from_pretrained(patient_path)
    assert GuidedModel(base, "~/lora").adapter_names == ["doctor_0"]


# ---------------------------------------------------------------------------------------------- trust boundaries
def test_pickled_doctors_and_references_are_refused_unless_opted_in(patient, tmp_path, monkeypatch):
    tiny_causal_lm(seed=1).save_pretrained(tmp_path / "doctor")
    pickled = pickle_weights(tmp_path / "doctor")
    unpickled = spy_on_torch_load(monkeypatch)
    with pytest.raises(ValueError, match=rf"{re.escape(str(pickled))} holds pickled weights.*use_safetensors=False"):
        DoctorLogitsProcessor(tmp_path / "doctor")
    with pytest.raises(ValueError, match="pytorch_model.bin holds pickled weights"):
        DoctorLogitsProcessor(tiny_causal_lm(seed=2), references=tmp_path / "doctor")
    assert unpickled == []
    DoctorLogitsProcessor(tmp_path / "doctor", use_safetensors=False)
    assert unpickled == [str(pickled)]


def test_a_pickled_lora_doctor_is_refused_by_guided_model_and_the_processor(saved_patient, tmp_path, monkeypatch):
    tiny_lora_doctor(saved_patient, seed=1).save_pretrained(tmp_path / "lora")
    pickle_weights(tmp_path / "lora", "adapter_model.bin")
    unpickled = spy_on_torch_load(monkeypatch)
    with pytest.raises(ValueError, match="adapter_model.bin holds pickled weights"):
        GuidedModel(copy.deepcopy(saved_patient), tmp_path / "lora")
    with pytest.raises(ValueError, match="adapter_model.bin holds pickled weights"):
        DoctorLogitsProcessor(tmp_path / "lora")
    assert unpickled == []


def test_a_hub_doctor_with_pickled_weights_only_is_refused_before_loading(monkeypatch):
    fake_hub_repo(monkeypatch, {"config.json", "pytorch_model.bin"})
    with pytest.raises(ValueError, match="owner/old-doctor/pytorch_model.bin holds pickled weights"):
        DoctorLogitsProcessor("owner/old-doctor")


def test_the_processor_never_sets_trust_remote_code(tmp_path, monkeypatch):
    tiny_causal_lm(seed=1).save_pretrained(tmp_path / "doctor")
    calls, original = [], AutoModelForCausalLM.from_pretrained

    def from_pretrained(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", from_pretrained)
    DoctorLogitsProcessor(tmp_path / "doctor", references=tmp_path / "doctor")
    assert calls and all("trust_remote_code" not in kwargs for kwargs in calls)
    assert all(kwargs["use_safetensors"] is True for kwargs in calls)


def test_loading_a_recorded_local_initial_model_warns_naming_the_path(tmp_path):
    tiny_causal_lm(seed=2).save_pretrained(tmp_path / "initial")
    recorded = {
        "guidance": "ratio",
        "guidance_reference": "initial",
        "initial_name_or_path": str(tmp_path / "initial"),
    }
    DoctorModel(tiny_causal_lm(seed=1), doctor_config=recorded).save_pretrained(tmp_path / "doctor")
    with pytest.warns(UserWarning, match=rf"local path '{re.escape(str(tmp_path / 'initial'))}'.*references="):
        processor = DoctorLogitsProcessor(tmp_path / "doctor")
    assert processor.references[0].name_or_path == str(tmp_path / "initial")


# ---------------------------------------------------------------------------------------------- concurrency
WAIT_S = 60


def in_thread(target) -> tuple[threading.Thread, dict]:
    """Start `target` in a thread; the dict gets its `"result"` or its `"error"`."""
    outcome = {}

    def run():
        try:
            outcome["result"] = target()
        except Exception as error:  # noqa: BLE001 (handed back to the test)
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def steps(patient, tokenizer, text, count=2):
    """`count` (input_ids, scores) calls of one greedy generation of `patient` from `text`."""
    input_ids = tokenizer([text], return_tensors="pt").input_ids
    calls = []
    with torch.no_grad():
        for _ in range(count):
            scores = patient(input_ids).logits[:, -1]
            calls.append((input_ids, scores))
            input_ids = torch.cat([input_ids, scores.argmax(-1, keepdim=True)], dim=-1)
    return calls


def test_two_generations_at_once_on_one_processor_are_refused(patient, tokenizer):
    processor = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0, tokenizer=tokenizer)
    first, second = steps(patient, tokenizer, "Tell me about cats."), steps(patient, tokenizer, "Hi!")
    alone = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0, tokenizer=tokenizer)
    expected = [alone(*call) for call in second]
    first_started, second_started, first_refused = threading.Event(), threading.Event(), threading.Event()

    def generate_first():
        processor(*first[0])
        first_started.set()
        second_started.wait(WAIT_S)
        try:
            return processor(*first[1])  # the second generation took the processor over in between
        finally:
            first_refused.set()

    def generate_second():
        first_started.wait(WAIT_S)
        out = [processor(*second[0])]
        second_started.set()
        first_refused.wait(WAIT_S)
        return out + [processor(*second[1])]

    threads = [in_thread(generate_first), in_thread(generate_second)]
    for thread, _ in threads:
        thread.join(WAIT_S)
    (_, first_outcome), (_, second_outcome) = threads
    assert isinstance(first_outcome.get("error"), RuntimeError), first_outcome
    assert "one processor per concurrent generation" in str(first_outcome["error"])
    assert all(torch.equal(out, want) for out, want in zip(second_outcome["result"], expected))


def test_a_generation_taken_over_during_a_call_is_refused_at_its_end(patient, tokenizer):
    doctor = tiny_causal_lm(seed=1)
    processor = DoctorLogitsProcessor(doctor, betas=1.0, tokenizer=tokenizer)
    first, second = steps(patient, tokenizer, "Tell me about cats."), steps(patient, tokenizer, "Hi!")
    in_forward, taken_over = threading.Event(), threading.Event()
    this_thread = threading.current_thread()

    def pause_the_other_thread(module, args, kwargs):
        if threading.current_thread() is not this_thread and not in_forward.is_set():
            in_forward.set()
            taken_over.wait(WAIT_S)

    handle = doctor.register_forward_pre_hook(pause_the_other_thread, with_kwargs=True)
    try:
        thread, outcome = in_thread(lambda: processor(*first[0]))
        assert in_forward.wait(WAIT_S)
        processor(*second[0])  # this thread takes the processor over while the first is inside its forward
        taken_over.set()
        thread.join(WAIT_S)
    finally:
        taken_over.set()
        handle.remove()
    assert isinstance(outcome.get("error"), RuntimeError), outcome
    processor(*second[1])  # the thread that took over goes on


def test_generations_one_after_the_other_in_two_threads_share_a_processor(patient, tokenizer):
    processor = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0, tokenizer=tokenizer)
    inputs = prompts(tokenizer)
    run = dict(max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    expected = patient.generate(**inputs, logits_processor=LogitsProcessorList([processor]), **run)
    outcomes = []
    for _ in range(2):
        processor.set_attention_mask(inputs["attention_mask"])
        thread, outcome = in_thread(
            lambda: patient.generate(**inputs, logits_processor=LogitsProcessorList([processor]), **run)
        )
        thread.join(WAIT_S)
        outcomes.append(outcome)
    processor.set_attention_mask(None)
    calls = steps(patient, tokenizer, "Hi!")
    for _ in range(2):  # called directly, with no reset in between: the second thread takes the processor over
        thread, outcome = in_thread(lambda: [processor(*call) for call in calls])
        thread.join(WAIT_S)
        outcomes.append(outcome)
    assert all("error" not in outcome for outcome in outcomes), outcomes
    assert torch.equal(outcomes[0]["result"], expected) and torch.equal(outcomes[1]["result"], expected)
    assert all(torch.equal(a, b) for a, b in zip(outcomes[2]["result"], outcomes[3]["result"]))


def test_guided_model_refuses_a_call_from_another_thread_during_a_generation(patient, tokenizer):
    base = copy.deepcopy(patient)
    guided = GuidedModel(base, tiny_lora_doctor(base, seed=1), betas=1.0)
    inputs = prompts(tokenizer)
    run = dict(max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    expected = guided.generate(**inputs, **run)
    paused, resume = threading.Event(), threading.Event()

    def pause_once(input_ids, scores):
        if not paused.is_set():
            paused.set()
            resume.wait(WAIT_S)
        return scores

    thread, outcome = in_thread(lambda: guided.generate(**inputs, logits_processor=[pause_once], **run))
    try:
        assert paused.wait(WAIT_S)
        with pytest.raises(RuntimeError, match="one GuidedModel, on its own patient, per concurrent generation"):
            guided.generate(**inputs, **run)
        with pytest.raises(RuntimeError, match="called from another thread"):
            base(**inputs)  # the patient itself, hooked by the generation under way
    finally:
        resume.set()
        thread.join(WAIT_S)
    assert torch.equal(outcome["result"], expected)
    assert torch.equal(guided.generate(**inputs, **run), expected)  # free again once the call returned


def test_guided_model_calls_one_after_the_other_in_two_threads(patient, tokenizer):
    base = copy.deepcopy(patient)
    guided = GuidedModel(base, tiny_lora_doctor(base, seed=1), betas=1.0)
    inputs = prompts(tokenizer)
    run = dict(max_new_tokens=3, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    expected = guided.generate(**inputs, **run)
    for _ in range(2):
        thread, outcome = in_thread(lambda: guided.generate(**inputs, **run))
        thread.join(WAIT_S)
        assert torch.equal(outcome["result"], expected)


def test_a_processor_keeps_nothing_of_threads_that_have_ended(patient, tokenizer):
    processor = DoctorLogitsProcessor(tiny_causal_lm(seed=1), betas=1.0, tokenizer=tokenizer)
    call = steps(patient, tokenizer, "Hi!")[0]
    for _ in range(3):  # a thread per request, one after the other
        thread, outcome = in_thread(lambda: processor(*call))
        thread.join(WAIT_S)
        assert "error" not in outcome
    processor(*call)
    assert processor._forward._interrupted == {}
