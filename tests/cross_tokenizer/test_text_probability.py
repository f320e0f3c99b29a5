"""TextPrefixModel against a brute force that enumerates every token path of a tiny model spelling the text."""

import math

import pytest

from tfpo_hf.cross_tokenizer import TextPrefixModel, TokenBytes
from tfpo_hf.testing import tiny_bpe_tokenizer, tiny_causal_lm, tiny_tokenizer

from . import brute_force


PROMPT = (1, 5, 9)


def model_for(tokenizer, seed=0):
    return tiny_causal_lm(vocab_size=len(tokenizer), seed=seed, logit_scale=3.0).double()


@pytest.fixture(scope="module")
def bpe():
    tokenizer = tiny_bpe_tokenizer()
    return TokenBytes.from_tokenizer(tokenizer), model_for(tokenizer)


CASES = [
    (b"", [b"t", b"the", b" cat", b"c"]),
    (b"the", [b" ", b" c", b" cat", b" cats", b"m"]),
    (b"the ca", [b"t", b"ts", b"t sat"]),  # the text ends inside the BPE's " cat" token
    (b"caf", ["é".encode(), "é".encode()[:1]]),  # a continuation that is half a character
    (b"caf" + "é".encode()[:1], ["é".encode()[1:], "é,".encode()[1:]]),  # the text ends inside a character
]


@pytest.mark.parametrize(("text", "continuations"), CASES)
def test_exact_log_probs_match_the_brute_force(bpe, text, continuations):
    token_bytes, model = bpe
    text_model = TextPrefixModel(token_bytes, brute_force.next_token_logprobs_of(model, PROMPT))
    text_model.advance(text) if text else None
    got = text_model.log_probs(continuations)
    expected = [
        brute_force.brute_force_log_prob(model, PROMPT, token_bytes.by_id, text, piece) for piece in continuations
    ]
    assert got.tolist() == pytest.approx(expected, abs=1e-9)


def test_advancing_piece_by_piece_equals_advancing_at_once(bpe):
    token_bytes, model = bpe
    text = b"the caf" + "é".encode()
    by_pieces = TextPrefixModel(token_bytes, brute_force.next_token_logprobs_of(model, PROMPT))
    for piece in (b"th", b"e c", b"a", b"f\xc3", b"\xa9"):
        by_pieces.advance(piece)
    at_once = TextPrefixModel(token_bytes, brute_force.next_token_logprobs_of(model, PROMPT))
    at_once.advance(text)
    continuations = [b" ", b",", b" cat"]
    assert by_pieces.log_probs(continuations).tolist() == pytest.approx(at_once.log_probs(continuations).tolist())
    expected = [
        brute_force.brute_force_log_prob(model, PROMPT, token_bytes.by_id, text, piece) for piece in continuations
    ]
    assert by_pieces.log_probs(continuations).tolist() == pytest.approx(expected, abs=1e-9)


def test_with_one_token_per_byte_the_text_probability_is_the_chain_rule():
    tokenizer = tiny_tokenizer()
    token_bytes = TokenBytes.from_tokenizer(tokenizer)
    model = model_for(tokenizer)
    text_model = TextPrefixModel(token_bytes, brute_force.next_token_logprobs_of(model, PROMPT), beam_size=1)
    text_model.advance(b"ab")
    ids = [token_bytes.ids_spelling(bytes([byte]))[0] for byte in b"abcd"]
    expected = brute_force.sequence_log_prob(model, PROMPT, tuple(ids)) - brute_force.sequence_log_prob(
        model, PROMPT, tuple(ids[:2])
    )
    assert float(text_model.log_probs([b"cd"])[0]) == pytest.approx(expected, abs=1e-9)


def test_a_wide_beam_is_exact_and_a_narrow_one_is_not(bpe):
    token_bytes, model = bpe
    text, continuations = b"the ca", [b"t", b"ts sat"]
    exact = [
        brute_force.brute_force_log_prob(model, PROMPT, token_bytes.by_id, text, piece) for piece in continuations
    ]
    results = {}
    for beam_size in (1, 10_000):
        text_model = TextPrefixModel(
            token_bytes, brute_force.next_token_logprobs_of(model, PROMPT), beam_size=beam_size
        )
        text_model.advance(text)
        results[beam_size] = text_model.log_probs(continuations).tolist()
    assert results[10_000] == pytest.approx(exact, abs=1e-9)
    assert results[1] != pytest.approx(exact, abs=1e-6)


def test_an_empty_continuation_has_log_probability_zero_and_an_unspellable_one_minus_infinity(bpe):
    token_bytes, model = bpe
    partial = TokenBytes(tuple(spelling if spelling != b"!" else b"" for spelling in token_bytes.by_id))
    text_model = TextPrefixModel(partial, brute_force.next_token_logprobs_of(model, PROMPT))
    text_model.advance(b"the")
    got = text_model.log_probs([b"", b"!"])
    assert got[0] == 0.0 and got[1] == float("-inf")
    with pytest.raises(ValueError, match="No token path of this model spells"):
        text_model.advance(b"!")


def test_each_path_is_run_once(bpe):
    token_bytes, model = bpe
    seen = []
    reference = brute_force.next_token_logprobs_of(model, PROMPT)

    def counting(paths):
        seen.extend(paths)
        return reference(paths)

    text_model = TextPrefixModel(token_bytes, counting)
    for piece in (b"the", b" ca", b"t"):
        text_model.log_probs([b" c", b" ca", b" cat"])
        text_model.advance(piece)
    assert len(seen) == len(set(seen))


def test_beam_size_must_be_positive(bpe):
    with pytest.raises(ValueError, match="beam_size"):
        TextPrefixModel(bpe[0], lambda paths: None, beam_size=0)


def test_a_narrow_beam_keeps_a_path_that_can_go_on_with_any_text(bpe):
    token_bytes, model = bpe
    text_model = TextPrefixModel(token_bytes, brute_force.next_token_logprobs_of(model, PROMPT), beam_size=1)
    for piece in (b"th", b"e", b" ", b"ca", b"t", b"s s", b"at", b" on"):
        assert math.isfinite(float(text_model.log_probs([piece])[0]))
        text_model.advance(piece)
        assert any(hypothesis.end == len(text_model.text) for hypothesis in text_model.hypotheses)
