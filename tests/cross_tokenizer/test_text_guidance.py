"""`DoctorLogitsProcessor` with a doctor of another tokenizer: the same tokens as the token path when the tokenizers
are in fact the same; against a brute force over the doctor's tokenizations when they differ; rows followed through
beams, sampled returns and left padding; the errors."""

import math

import pytest
import torch
from transformers import CompileConfig

from tfpo_hf import DoctorLogitsProcessor
from tfpo_hf.cross_tokenizer import PromptedPaths, TokenBytes
from tfpo_hf.cross_tokenizer.aligned_text import AlignedTextModel
from tfpo_hf.testing import tiny_bpe_tokenizer, tiny_causal_lm, tiny_lora_doctor, tiny_tokenizer

from ..helpers.generation import PROMPTS, encode, generate
from . import brute_force


CONVERSATIONS = [[{"role": "user", "content": prompt}] for prompt in PROMPTS]
SAMPLING = {"do_sample": True, "temperature": 0.9, "num_return_sequences": 2}
BEAMS = {"num_beams": 3, "num_return_sequences": 2}
CALLS = [{}, SAMPLING, BEAMS]
CALL_IDS = ["greedy", "sampling", "beams"]


def left_padding(tokenizer):
    """`tokenizer`, padding on the left as `generate` wants."""
    tokenizer.padding_side = "left"
    return tokenizer


TOKENIZER_PAIRS = {  # patient's tokenizer, doctor's: bytes against merges, and two BPEs of different vocabularies
    "byte-patient,bpe-doctor": (lambda: left_padding(tiny_tokenizer()), lambda: tiny_bpe_tokenizer(320)),
    "bpe-patient,smaller-bpe-doctor": (lambda: left_padding(tiny_bpe_tokenizer(320)), lambda: tiny_bpe_tokenizer(270)),
}


@pytest.fixture(scope="module", params=list(TOKENIZER_PAIRS))
def pair(request):
    """(patient, its tokenizer, doctor, its tokenizer)."""
    patient_tokenizer, doctor_tokenizer = (make() for make in TOKENIZER_PAIRS[request.param])
    patient = tiny_causal_lm(vocab_size=len(patient_tokenizer), seed=0)
    doctor = tiny_causal_lm(vocab_size=len(doctor_tokenizer), seed=3, logit_scale=3.0)
    return patient, patient_tokenizer, doctor, doctor_tokenizer


def seeded_generate(patient, inputs, processor, **kwargs):
    """`generate` from one seed: the new tokens and the processed scores."""
    torch.manual_seed(5)
    return generate(patient, inputs, processor, True, **kwargs)


@pytest.mark.parametrize("kwargs", CALLS, ids=CALL_IDS)
@pytest.mark.parametrize("guided_top_k", [6, 259])
def test_identical_tokenizers_give_the_token_paths_tokens(patient, tokenizer, kwargs, guided_top_k):
    doctor = tiny_causal_lm(seed=1, logit_scale=3.0)
    inputs = encode(tokenizer, PROMPTS)
    common = dict(betas=1.5, tokenizer=tokenizer, guided_top_k=guided_top_k, references="none")
    by_tokens = DoctorLogitsProcessor(doctor, attention_mask=inputs.attention_mask, **common)
    by_text = DoctorLogitsProcessor(
        doctor, doctor_tokenizers=tokenizer, conversations=CONVERSATIONS, text_probability="aligned", **common
    )
    token_ids, token_scores = seeded_generate(patient, inputs, by_tokens, **kwargs)
    text_ids, text_scores = seeded_generate(patient, inputs, by_text, **kwargs)
    assert torch.equal(text_ids, token_ids)
    finite = torch.isfinite(token_scores)
    assert torch.equal(torch.isfinite(text_scores), finite)
    torch.testing.assert_close(text_scores[finite], token_scores[finite], atol=1e-4, rtol=0)


def test_identical_tokenizers_with_a_lora_doctor_and_its_base(saved_patient, tokenizer):
    doctor = tiny_lora_doctor(saved_patient, 7, target_modules=["q_proj", "v_proj", "down_proj"])
    inputs = encode(tokenizer, PROMPTS)
    common = dict(betas=2.0, tokenizer=tokenizer, guided_top_k=8, references="initial")
    by_tokens = DoctorLogitsProcessor(doctor, attention_mask=inputs.attention_mask, **common)
    by_text = DoctorLogitsProcessor(doctor, doctor_tokenizers=tokenizer, conversations=CONVERSATIONS, **common)
    assert torch.equal(
        seeded_generate(saved_patient, inputs, by_text, **BEAMS)[0],
        seeded_generate(saved_patient, inputs, by_tokens, **BEAMS)[0],
    )


def greedy_history(processor, patient, tokenizer, prompts, steps):
    """Greedy decoding of `prompts` by hand, `steps` tokens: each step's input ids, patient scores and mixed scores."""
    inputs = encode(tokenizer, prompts)
    input_ids, history = inputs.input_ids, []
    for _ in range(steps):
        grown = input_ids.shape[1] - inputs.attention_mask.shape[1]
        mask = torch.cat([inputs.attention_mask, torch.ones(len(prompts), grown, dtype=torch.long)], dim=1)
        with torch.no_grad():
            scores = patient(input_ids=input_ids, attention_mask=mask).logits[:, -1]
        mixed = processor(input_ids, scores)
        history.append((input_ids, scores, mixed))
        input_ids = torch.cat([input_ids, mixed.argmax(-1, keepdim=True)], dim=1)
    return history, inputs.input_ids.shape[1]


def doctor_prompt(doctor_tokenizer, conversation):
    """The doctor's prompt ids for a conversation, as the processor builds them."""
    text = doctor_tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    return tuple(doctor_tokenizer(text, add_special_tokens=False)["input_ids"])


def text_processor(doctor, tokenizer, doctor_tokenizer, conversations, **kwargs):
    return DoctorLogitsProcessor(
        doctor,
        betas=1.0,
        tokenizer=tokenizer,
        doctor_tokenizers=doctor_tokenizer,
        conversations=conversations,
        references="none",
        **kwargs,
    )


def guidance_of(history, prompt_length, patient_bytes):
    """For each step and row: the text so far, and the guidance (mixed - patient log-probs) of each candidate."""
    for input_ids, scores, mixed in history:
        patient_logps = scores.log_softmax(-1)
        for row in range(len(input_ids)):
            text = b"".join(patient_bytes.by_id[index] for index in input_ids[row, prompt_length:].tolist())
            candidates = torch.isfinite(mixed[row]).nonzero().flatten().tolist()
            yield (
                row,
                text,
                {candidate: float(mixed[row, candidate] - patient_logps[row, candidate]) for candidate in candidates},
            )


def test_marginal_guidance_is_the_brute_force_over_the_doctors_tokenizations(pair):
    """Exact marginal (no beam): each candidate's guidance is log Q(text + s) - log Q(text), Q summed over every
    path of the doctor, each path scored by a whole forward."""
    patient, tokenizer, bpe_doctor, doctor_tokenizer = pair
    conversations = CONVERSATIONS[:2]
    processor = text_processor(
        bpe_doctor,
        tokenizer,
        doctor_tokenizer,
        conversations,
        guided_top_k=4,
        text_probability="marginal",
        text_beam_size=None,
    )
    history, prompt_length = greedy_history(processor, patient, tokenizer, PROMPTS[:2], steps=3)
    patient_bytes, doctor_bytes = TokenBytes.from_tokenizer(tokenizer), TokenBytes.from_tokenizer(doctor_tokenizer)
    for row, text, guidance in guidance_of(history, prompt_length, patient_bytes):
        prompt = doctor_prompt(doctor_tokenizer, conversations[row])
        assert len(guidance) == 4
        for candidate, value in guidance.items():
            piece = patient_bytes.by_id[candidate]
            expected = brute_force.brute_force_log_prob(bpe_doctor, prompt, doctor_bytes.by_id, text, piece)
            assert value == pytest.approx(expected, abs=1e-4)


def aligned_path(model, prompt, doctor_bytes, pieces):
    """The aligned reading by its rule, with whole forwards: a piece that is one doctor token extends the path by
    it; any other piece by the most probable path spelling it exactly."""
    path = ()
    for piece in pieces:
        ids = doctor_bytes.ids_spelling(piece)
        if ids:
            path += (max(ids, key=lambda index: brute_force.sequence_log_prob(model, prompt, path + (index,))),)
            continue
        spellings, stack = [], [((), b"")]
        while stack:
            tokens, spelled = stack.pop()
            for token, spelling in enumerate(doctor_bytes.by_id):
                if spelling and piece.startswith(spelled + spelling):
                    (spellings if spelled + spelling == piece else stack).append(
                        (tokens + (token,), spelled + spelling)
                    )
        path += max(
            (tokens for tokens, _ in spellings),
            key=lambda tokens: brute_force.sequence_log_prob(model, prompt, path + tokens),
        )
    return path


def test_aligned_guidance_follows_its_rule_against_whole_forwards(pair):
    """Aligned: a candidate that is one doctor token gets its token probability after the aligned path; any other
    gets the marginal over the doctor's paths from there (exact here: no beam)."""
    patient, tokenizer, bpe_doctor, doctor_tokenizer = pair
    conversations = CONVERSATIONS[:2]
    processor = text_processor(
        bpe_doctor, tokenizer, doctor_tokenizer, conversations, guided_top_k=5, text_beam_size=None
    )
    history, prompt_length = greedy_history(processor, patient, tokenizer, PROMPTS[:2], steps=7)
    patient_bytes, doctor_bytes = TokenBytes.from_tokenizer(tokenizer), TokenBytes.from_tokenizer(doctor_tokenizer)
    one_token_candidates = split_candidates = 0
    for step, (row, _text, guidance) in enumerate(guidance_of(history, prompt_length, patient_bytes)):
        prompt = doctor_prompt(doctor_tokenizer, conversations[row])
        generated = history[step // 2][0][row, prompt_length:].tolist()
        path = aligned_path(bpe_doctor, prompt, doctor_bytes, [patient_bytes.by_id[index] for index in generated])
        for candidate, value in guidance.items():
            piece = patient_bytes.by_id[candidate]
            ids = doctor_bytes.ids_spelling(piece)
            if not piece:  # a special token: the doctor's token of the same text (`<|im_end|>`)
                ids = [doctor_tokenizer.convert_tokens_to_ids(tokenizer.convert_ids_to_tokens(candidate))]
            if ids:
                one_token_candidates += 1
                expected = brute_force.sequence_log_prob(
                    bpe_doctor, prompt, path + (ids[0],)
                ) - brute_force.sequence_log_prob(bpe_doctor, prompt, path)
            else:
                split_candidates += 1
                expected = math.log(
                    brute_force.brute_force_prefix_prob(bpe_doctor, prompt + path, doctor_bytes.by_id, piece)
                )
            assert value == pytest.approx(expected, abs=1e-4)
    assert one_token_candidates > 0
    assert split_candidates > 0 or len(tokenizer) == 259  # the byte patient's candidates are all doctor tokens


def test_aligned_reading_of_pieces_the_doctor_splits():
    """The patient's tokens of a text, several of them not one doctor token: the aligned path is the most probable
    exact spelling of each, and candidates after it score as the rule says."""
    patient_tokenizer, doctor_tokenizer = tiny_bpe_tokenizer(320), tiny_bpe_tokenizer(270)
    doctor = tiny_causal_lm(vocab_size=len(doctor_tokenizer), seed=3, logit_scale=3.0)
    patient_bytes, doctor_bytes = (
        TokenBytes.from_tokenizer(patient_tokenizer),
        TokenBytes.from_tokenizer(doctor_tokenizer),
    )
    pieces = [patient_bytes.by_id[index] for index in patient_tokenizer.encode(" the cat sat on the mat")]
    assert any(not doctor_bytes.ids_spelling(piece) for piece in pieces)
    prompt = doctor_prompt(doctor_tokenizer, CONVERSATIONS[0])
    reader = AlignedTextModel(doctor_bytes, PromptedPaths(doctor, prompt), beam_size=None)
    for piece in pieces:
        reader.advance(piece)
    path = aligned_path(doctor, prompt, doctor_bytes, pieces)
    assert reader.path == path
    candidates = [b" a", b" and", b"s", b" sat"]
    expected = [
        math.log(brute_force.brute_force_prefix_prob(doctor, prompt + path, doctor_bytes.by_id, piece))
        if not doctor_bytes.ids_spelling(piece)
        else brute_force.sequence_log_prob(doctor, prompt, path + (doctor_bytes.ids_spelling(piece)[0],))
        - brute_force.sequence_log_prob(doctor, prompt, path)
        for piece in candidates
    ]
    torch.testing.assert_close(
        reader.log_probs(candidates), torch.tensor(expected, dtype=torch.float64), atol=1e-4, rtol=0
    )


class Recording:
    """A processor that records each call's input ids, scores and mixed scores."""

    def __init__(self, processor):
        self.processor, self.calls = processor, []

    def __call__(self, input_ids, scores):
        mixed = self.processor(input_ids, scores)
        self.calls.append((input_ids.clone(), scores.clone(), mixed.clone()))
        return mixed


@pytest.mark.parametrize("kwargs", [SAMPLING, BEAMS], ids=["sampling", "beams"])
@pytest.mark.parametrize("text_probability", ["aligned", "marginal"])
def test_each_row_is_guided_as_its_own_sequence_read_alone(pair, kwargs, text_probability):
    """Beams reorder and branch rows, sampling repeats prompts, prompts are left padded: every row of every step
    gets the scores a fresh processor gives that row's sequence fed to it alone, token by token."""
    patient, tokenizer, doctor, doctor_tokenizer = pair
    settings = dict(guided_top_k=5, text_probability=text_probability)
    recording = Recording(text_processor(doctor, tokenizer, doctor_tokenizer, CONVERSATIONS[:2], **settings))
    inputs = encode(tokenizer, PROMPTS[:2])
    seeded_generate(patient, inputs, recording, max_new_tokens=5, **kwargs)
    prompt_length = inputs.input_ids.shape[1]
    rows_per_prompt = len(recording.calls[0][0]) // 2
    for input_ids, scores, mixed in recording.calls[2:]:
        for row in range(0, len(input_ids), 3):
            alone = text_processor(
                doctor, tokenizer, doctor_tokenizer, [CONVERSATIONS[row // rows_per_prompt]], **settings
            )
            for length in range(prompt_length, input_ids.shape[1]):
                alone(input_ids[row : row + 1, :length], scores[row : row + 1])
            torch.testing.assert_close(alone(input_ids[row : row + 1], scores[row : row + 1]), mixed[row : row + 1])


def test_conversations_are_required_and_must_fit_the_prompts(patient, tokenizer):
    doctor_tokenizer = tiny_bpe_tokenizer()
    doctor = tiny_causal_lm(vocab_size=len(doctor_tokenizer), seed=3)
    inputs = encode(tokenizer, PROMPTS[:2])
    processor = DoctorLogitsProcessor(
        doctor, tokenizer=tokenizer, doctor_tokenizers=doctor_tokenizer, references="none"
    )
    with pytest.raises(ValueError, match="reads the conversation in its own chat template.*conversations="):
        generate(patient, inputs, processor)
    processor.set_conversations(CONVERSATIONS[:3])
    with pytest.raises(ValueError, match="3 conversations for a batch of 2 rows"):
        generate(patient, inputs, processor)
    processor.set_conversations(CONVERSATIONS[:2])
    generate(patient, inputs, processor, max_new_tokens=2)
    with pytest.raises(ValueError, match="not the ones the conversations were set for"):
        generate(patient, encode(tokenizer, PROMPTS[2:]), processor, max_new_tokens=2)


def test_settings_a_doctor_of_another_tokenizer_cannot_take(tokenizer):
    doctor_tokenizer = tiny_bpe_tokenizer()
    doctor = tiny_causal_lm(vocab_size=len(doctor_tokenizer), seed=3)
    text_doctor = dict(doctor_tokenizers=doctor_tokenizer, conversations=CONVERSATIONS)
    with pytest.raises(ValueError, match="the patient cannot be its reference"):
        DoctorLogitsProcessor(doctor, tokenizer=tokenizer, references="patient", **text_doctor)
    with pytest.raises(ValueError, match="`compile_doctors` applies to doctors of the patient's tokenizer only"):
        DoctorLogitsProcessor(
            doctor, tokenizer=tokenizer, references="none", compile_doctors=CompileConfig(), **text_doctor
        )
    with pytest.raises(ValueError, match="pass the patient's as `tokenizer=` too"):
        DoctorLogitsProcessor(doctor, references="none", **text_doctor)
    with pytest.raises(ValueError, match="fewer than the 320 tokens of its tokenizer"):
        DoctorLogitsProcessor(tiny_causal_lm(), tokenizer=tokenizer, references="none", **text_doctor)
    with pytest.raises(ValueError, match="`text_probability` must be one of"):
        DoctorLogitsProcessor(doctor, tokenizer=tokenizer, references="none", text_probability="exact", **text_doctor)
    with pytest.raises(ValueError, match="Got 2 `doctor_tokenizers` for 1 doctors"):
        DoctorLogitsProcessor(doctor, tokenizer=tokenizer, doctor_tokenizers=[doctor_tokenizer] * 2)
    assert DoctorLogitsProcessor(doctor, tokenizer=tokenizer, references="none", **text_doctor).guided_top_k == 10
