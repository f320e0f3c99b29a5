"""Bad input to the serving core (`GuidedRequests`, `request_betas`): missing doctors, a tokenizer of the wrong kind,
token ids of the wrong kind or outside the vocabulary, request keys added twice or not hashable, and the engine's
numbers of doctors and recorded betas; each case asserts the exception and the key words of its message (the
argument, what was given and what is accepted), that nothing changed, or that the input works."""

import numpy as np
import pytest
import torch

from tfpo_hf.serving import GuidedRequests
from tfpo_hf.serving.guided_requests import request_betas
from tfpo_hf.testing import tiny_causal_lm


TOKENS = 259  # len(tiny_tokenizer())
PROMPT = [40, 72, 105]


@pytest.fixture(scope="module")
def doctor():
    return tiny_causal_lm(seed=3, hidden_size=32, num_hidden_layers=1).eval()


@pytest.fixture
def core(doctor, tokenizer):
    return GuidedRequests(doctor, tokenizer=tokenizer, references="none")


def guided_tokens(core, prompt_ids, output_ids) -> int:
    """The greedy token of one request guided at beta 2, on uniform patient scores."""
    core.add("request", prompt_ids, output_ids, 2.0)
    return int(core.apply(torch.zeros(1, TOKENS), {0: "request"}).argmax())


# ---------------------------------------------------------------------------------------------- construction
@pytest.mark.parametrize("doctors", [None, [], "", 3])
def test_missing_or_wrong_doctors_are_named(doctors, tokenizer):
    with pytest.raises(ValueError, match=r"`doctors` (is empty|must be).*(give at least one|got)"):
        GuidedRequests(doctors, tokenizer=tokenizer)


@pytest.mark.parametrize("tokenizer", ["gpt2", 259, "model"])
def test_a_tokenizer_of_the_wrong_kind_is_named(doctor, tokenizer):
    tokenizer = doctor if tokenizer == "model" else tokenizer
    given = "a LlamaForCausalLM" if tokenizer is doctor else repr(tokenizer)
    with pytest.raises(
        ValueError, match=rf"`tokenizer` must be the patient's tokenizer .*or None, got {given}: .*Auto"
    ):
        GuidedRequests(doctor, tokenizer=tokenizer)


def test_without_a_tokenizer_ids_are_bounded_by_what_the_doctors_embed(tokenizer):
    wide = tiny_causal_lm(vocab_size=300, seed=1)
    core = GuidedRequests([wide, tiny_causal_lm(seed=2)], references="none")  # 300 and 259 ids: 259 bound both
    core.add(0, [258], [], 1.0)
    with pytest.raises(ValueError, match=r"`prompt_ids` holds 259 at position 0.*0 to 258 \(the ids every doctor"):
        core.add(1, [259], [], 1.0)


# ---------------------------------------------------------------------------------------------- token ids
SEQUENCE_KINDS = {
    "list": list,
    "tuple": tuple,
    "1-d tensor": torch.tensor,
    "1-d int32 numpy array": lambda ids: np.array(ids, dtype=np.int32),
    "list of numpy ints": lambda ids: [np.int64(i) for i in ids],
    "list of 0-d tensors": lambda ids: [torch.tensor(i) for i in ids],
}


@pytest.mark.parametrize("kind", list(SEQUENCE_KINDS.values()), ids=list(SEQUENCE_KINDS))
def test_prompt_and_output_ids_of_every_sequence_kind_guide_alike(core, doctor, tokenizer, kind):
    expected = guided_tokens(GuidedRequests(doctor, tokenizer=tokenizer, references="none"), PROMPT, [7])
    assert guided_tokens(core, kind(PROMPT), kind([7])) == expected
    assert core.requests["request"].history() == [*PROMPT, 7]
    assert all(type(token) is int for token in core.requests["request"].prompt_ids)  # read once, at entry


def test_the_engines_output_list_is_kept_live(core):
    output_ids = []
    core.add("request", PROMPT, output_ids, 1.0)
    output_ids.append(41)
    assert core.requests["request"].history() == [*PROMPT, 41]


REFUSED_IDS = {
    "2-d batch": ([PROMPT], r"got \[\[40, 72, 105\]\] \(a list\)"),
    "2-d tensor": (torch.tensor([PROMPT]), r"got a Tensor of shape \(1, 3\) and dtype torch.int64"),
    "floats": ([40.0, 72.5], r"got \[40\.0, 72\.5\] \(a list\)"),
    "float tensor": (torch.tensor([40.0]), r"got a Tensor of shape \(1,\) and dtype torch.float32"),
    "float array": (np.array([40.0]), r"got a ndarray of shape \(1,\) and dtype float64"),
    "bools": ([True, False], r"got \[True, False\] \(a list\)"),
    "text": ("Hi!", r"got 'Hi!' \(a str\)"),
    "one id": (40, r"got 40 \(an? int\)"),
    "None": (None, r"got None"),
    "strings": (["40", "72"], r"got \['40', '72'\] \(a list\)"),
    "ragged": ([40, [72]], r"got \[40, \[72\]\] \(a list\)"),
    "a set": ({40, 72}, r"got \{40, 72\} \(a set\)"),
}


@pytest.mark.parametrize("argument", ["prompt_ids", "output_ids"])
@pytest.mark.parametrize("value, given", list(REFUSED_IDS.values()), ids=list(REFUSED_IDS))
def test_ids_that_are_not_a_sequence_of_ints_are_refused_naming_the_argument(core, argument, value, given):
    ids = {"prompt_ids": PROMPT, "output_ids": [], argument: value}
    accepted = r"must be a list, tuple, 1-d tensor or 1-d numpy array of int token ids"
    with pytest.raises(ValueError, match=rf"`{argument}` {accepted}, {given}"):
        core.add("request", ids["prompt_ids"], ids["output_ids"], 1.0)
    assert core.requests == {}


@pytest.mark.parametrize("argument", ["prompt_ids", "output_ids"])
@pytest.mark.parametrize("bad, position", [(-1, 1), (TOKENS, 2), (10**6, 0)])
def test_ids_outside_the_vocabulary_are_refused_naming_id_and_position(core, argument, bad, position):
    ids = {"prompt_ids": PROMPT, "output_ids": [5]}
    ids[argument] = [40, 72, 105][:position] + [bad] + [41]
    message = (
        rf"`{argument}` holds {bad} at position {position}, not a token id: ids run from 0 to 258 \(the tokenizer"
    )
    with pytest.raises(ValueError, match=message):
        core.add("request", ids["prompt_ids"], ids["output_ids"], 1.0)
    assert core.requests == {}


@pytest.mark.parametrize("empty", [[], (), torch.tensor([], dtype=torch.long), np.array([], dtype=np.int64)])
def test_an_empty_prompt_is_refused_and_empty_output_accepted(core, empty):
    with pytest.raises(ValueError, match=r"`prompt_ids` is empty: a guided request needs at least one prompt token"):
        core.add("request", empty, [], 1.0)
    core.add("request", PROMPT, empty, 1.0)
    assert core.requests["request"].history() == PROMPT and core.resumed == 0


# ---------------------------------------------------------------------------------------------- request keys
def test_a_request_added_twice_is_refused_and_left_as_it_was(core):
    core.add("request", PROMPT, [], 1.0)
    with pytest.raises(ValueError, match=r"`key` 'request' is already guided: `remove` it first"):
        core.add("request", [41], [], 3.0)
    assert core.requests["request"].prompt_ids == PROMPT and core.requests["request"].betas == [1.0]
    core.remove("request")
    core.add("request", [41], [], 3.0)  # after a preemption: removed, then added again
    assert core.requests["request"].betas == [3.0]


def test_a_key_added_without_guidance_may_be_added_again(core):
    core.add("request", PROMPT, [], None)
    core.add("request", PROMPT, [], 2.0)
    assert list(core.requests) == ["request"]


@pytest.mark.parametrize("method", ["add", "remove"])
def test_an_unhashable_key_is_refused_naming_it(core, method):
    arguments = ([1], PROMPT, [], 1.0) if method == "add" else ([1],)
    with pytest.raises(ValueError, match=r"`key` must be hashable .*got a list"):
        getattr(core, method)(*arguments)


def test_removing_a_request_that_is_not_guided_is_ignored(core):
    # documented: an engine may remove every request leaving its batch (vLLM's processor removes its own only)
    core.add("guided", PROMPT, [], 1.0)
    core.add("plain", PROMPT, [], None)
    expected = core.apply(torch.zeros(1, TOKENS), {0: "guided"}).clone()
    for key in ("plain", "never added", 12345):
        core.remove(key)
    core.remove("guided")
    core.remove("guided")
    core.add("guided", PROMPT, [], 1.0)
    assert torch.equal(core.apply(torch.zeros(1, TOKENS), {0: "guided"}), expected)


# ---------------------------------------------------------------------------------------------- request_betas
@pytest.mark.parametrize("num_doctors", [0, -1, 1.0, "1", None, True])
def test_request_betas_needs_a_positive_number_of_doctors(num_doctors):
    with pytest.raises(ValueError, match=rf"`num_doctors` must be a positive int .*got {num_doctors!r}"):
        request_betas(1.0, num_doctors)


@pytest.mark.parametrize("recorded", [[1.0], [1.0, float("nan")], "2", [1.0, None]])
def test_request_betas_refuses_recorded_betas_of_another_count_or_kind(recorded):
    with pytest.raises(ValueError, match=r"`recorded`: .*Pass the betas the doctors record, or None"):
        request_betas("default", 2, recorded)


@pytest.mark.parametrize(
    "value, expected",
    [(np.float32(2.0), [2.0, 2.0]), (torch.tensor(0.5), [0.5, 0.5]), (np.array([1.0, 0.0]), [1.0, 0.0]), (0, None)],
)
def test_request_betas_reads_numpy_and_tensor_numbers(value, expected):
    assert request_betas(value, 2, [1.0, 1.0]) == expected
