import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfpo_hf.cross_tokenizer import TokenBytes
from tfpo_hf.testing import tiny_bpe_tokenizer, tiny_tokenizer

from .tokenizers import byte_fallback_tokenizer


TEXTS = st.text(alphabet="the cats é日本語\n:.", max_size=24)


@settings(max_examples=60, deadline=None)
@given(text=TEXTS)
def test_byte_level_bpe_tokens_spell_the_text_they_encode(text):
    tokenizer = tiny_bpe_tokenizer()
    token_bytes = TokenBytes.from_tokenizer(tokenizer)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert b"".join(token_bytes.by_id[index] for index in ids) == text.encode("utf-8")


def test_byte_level_bpe_has_tokens_that_split_a_character():
    token_bytes = TokenBytes.from_tokenizer(tiny_bpe_tokenizer())
    halves = [spelling for spelling in token_bytes.by_id if spelling == "日".encode()[:1]]
    assert halves, "the trained BPE keeps single bytes of multibyte characters as tokens"
    assert len(token_bytes.by_id) == len(tiny_bpe_tokenizer())


@settings(max_examples=60, deadline=None)
@given(text=TEXTS.filter(bool))
def test_byte_fallback_tokens_spell_the_text_after_the_dummy_prefix(text):
    tokenizer = byte_fallback_tokenizer()
    token_bytes = TokenBytes.from_tokenizer(tokenizer)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert token_bytes.leading_space
    assert b"".join(token_bytes.by_id[index] for index in ids) == b" " + text.encode("utf-8")


def test_special_tokens_and_padding_rows_spell_nothing():
    tokenizer = tiny_tokenizer()
    token_bytes = TokenBytes.from_tokenizer(tokenizer, vocab_size=300)
    assert len(token_bytes.by_id) == 300
    assert all(token_bytes.by_id[index] == b"" for index in (0, 1, 2, *range(259, 300)))
    assert sorted(token_bytes.by_id[3:259]) == [bytes([byte]) for byte in range(256)]
    assert token_bytes.max_length == 1
    assert len(token_bytes.order) == 256


@pytest.mark.parametrize("prefix", [b"c", b"ca", b" cat", b"\xe6", b"\xff", b"zzz", b"t"])
def test_prefix_range_holds_exactly_the_tokens_starting_with_the_prefix(prefix):
    token_bytes = TokenBytes.from_tokenizer(tiny_bpe_tokenizer())
    start, end = token_bytes.prefix_range(prefix)
    in_range = {int(index) for index in token_bytes.order[start:end]}
    expected = {index for index, spelling in enumerate(token_bytes.by_id) if spelling and spelling.startswith(prefix)}
    assert in_range == expected


def test_prefix_range_past_bytes_0xff():
    token_bytes = TokenBytes((b"", b"\xff", b"\xff\xff", b"\xfe\xff", b"a"))
    assert {int(i) for i in token_bytes.order[slice(*token_bytes.prefix_range(b"\xff"))]} == {1, 2}
    assert {int(i) for i in token_bytes.order[slice(*token_bytes.prefix_range(b"\xfe"))]} == {3}


def test_a_tokenizer_that_does_not_spell_bytes_is_refused():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece({"[UNK]": 0, "cat": 1, "##s": 2}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()
    with pytest.raises(ValueError, match="byte-level BPE tokenizer or SentencePiece with byte fallback"):
        TokenBytes.from_tokenizer(PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]"))
