"""The bytes each token spells, for the two tokenizer families that spell text byte by byte: byte-level BPE (GPT-2,
Llama 3, Qwen, SmolLM2) and SentencePiece with byte fallback (Llama 2, Mistral, Gemma). Text-level guidance between
models of different tokenizers works on these bytes: a token is a piece of text, whatever its id."""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field

import torch
from transformers.convert_slow_tokenizer import bytes_to_unicode


SENTENCEPIECE_SPACE = "\u2581"  # "▁", SentencePiece's marker for a space
BYTE_FALLBACK_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@dataclass(frozen=True)
class TokenBytes:
    """The byte string of every id of one tokenizer, sorted so that "the ids whose bytes start with r" is a range.

    Attributes:
        by_id: `by_id[i]` is the bytes token `i` spells; `b""` for special tokens and ids past the tokenizer's
            vocabulary (rows a model's head pads to), which spell no text.
        leading_space: whether the tokenizer writes a space before the first word of a text (SentencePiece's dummy
            prefix, which its decoder strips): the text model then reads a response as `b" " + text`.
        order: (vocab,) the ids with non-empty bytes, sorted by their bytes.
        sorted_bytes: the bytes of `order`, in that order (what prefix ranges are looked up in).
        ids_by_bytes: bytes -> the ids spelling exactly those bytes (several ids may spell the same bytes).
        max_length: the longest byte string of a token.
    """

    by_id: tuple[bytes, ...]
    leading_space: bool = False
    order: torch.Tensor = field(init=False, repr=False)
    sorted_bytes: list[bytes] = field(init=False, repr=False)
    ids_by_bytes: dict[bytes, list[int]] = field(init=False, repr=False)
    max_length: int = field(init=False)

    def __post_init__(self) -> None:
        spelled = sorted((spelling, index) for index, spelling in enumerate(self.by_id) if spelling)
        ids_by_bytes: dict[bytes, list[int]] = {}
        for spelling, index in spelled:
            ids_by_bytes.setdefault(spelling, []).append(index)
        object.__setattr__(self, "order", torch.tensor([index for _, index in spelled], dtype=torch.long))
        object.__setattr__(self, "sorted_bytes", [spelling for spelling, _ in spelled])
        object.__setattr__(self, "ids_by_bytes", ids_by_bytes)
        object.__setattr__(self, "max_length", max((len(spelling) for spelling, _ in spelled), default=0))

    @classmethod
    def from_tokenizer(cls, tokenizer, vocab_size: int | None = None) -> TokenBytes:
        """Read every id's bytes from a fast tokenizer (`vocab_size`: the model head's width, default the
        tokenizer's length; extra ids spell nothing).

        Raises:
            ValueError: for a tokenizer that does not spell text byte by byte (WordPiece's `##` continuations,
                a SentencePiece model without byte fallback), whose tokens cannot all be written as bytes.
        """
        vocab_size = vocab_size or len(tokenizer)
        special_ids = set(tokenizer.all_special_ids) | {
            index for index, added in tokenizer.added_tokens_decoder.items() if added.special
        }
        pieces = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
        decoder = _decoder_kinds(tokenizer)
        if "ByteLevel" in decoder:
            spell, leading_space = _byte_level_spelling(), False
        elif "ByteFallback" in decoder and ("Metaspace" in decoder or "Replace" in decoder):
            spell, leading_space = _sentencepiece_spelling, _adds_dummy_prefix(tokenizer)
        else:
            raise ValueError(
                f"{type(tokenizer).__name__} (decoder {sorted(decoder) or 'none'}) does not spell text byte by "
                "byte: cross-tokenizer guidance needs a byte-level BPE tokenizer or SentencePiece with byte "
                "fallback on both sides. Use a doctor of the patient's family (one tokenizer) instead."
            )
        by_id = [b"" if index in special_ids or piece is None else spell(piece) for index, piece in enumerate(pieces)]
        return cls(tuple(by_id) + (b"",) * (vocab_size - len(by_id)), leading_space=leading_space)

    def prefix_range(self, prefix: bytes) -> tuple[int, int]:
        """The positions `[start, end)` in `order` of the ids whose bytes start with `prefix` (non-empty)."""
        start = bisect.bisect_left(self.sorted_bytes, prefix)
        upper = _smallest_string_after_prefix(prefix)
        end = len(self.sorted_bytes) if upper is None else bisect.bisect_left(self.sorted_bytes, upper, lo=start)
        return start, end

    def ids_spelling(self, text: bytes) -> list[int]:
        """The ids whose bytes are exactly `text`."""
        return self.ids_by_bytes.get(text, [])


def _smallest_string_after_prefix(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with `prefix` (None: there is none)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _decoder_kinds(tokenizer) -> set[str]:
    """The types of the backend decoder and of the decoders it chains (`Sequence`)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return set()
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    kinds = {decoder.get("type")}
    kinds.update(part.get("type") for part in decoder.get("decoders", []))
    return {kind for kind in kinds if kind}


def _byte_level_spelling():
    """Byte-level BPE writes each byte as one printable character (GPT-2's table): map them back."""
    byte_of_character = {character: byte for byte, character in bytes_to_unicode().items()}

    def spell(piece: str) -> bytes:
        return bytes(byte_of_character[character] for character in piece)

    return spell


def _sentencepiece_spelling(piece: str) -> bytes:
    """SentencePiece: `<0xAB>` is one byte (byte fallback), `▁` a space, anything else its UTF-8 text."""
    byte_piece = BYTE_FALLBACK_PIECE.match(piece)
    if byte_piece:
        return bytes([int(byte_piece.group(1), 16)])
    return piece.replace(SENTENCEPIECE_SPACE, " ").encode("utf-8")


def _adds_dummy_prefix(tokenizer) -> bool:
    """Whether encoding a word puts a `▁` before it (the dummy prefix the decoder strips again)."""
    first_piece = tokenizer.convert_ids_to_tokens(tokenizer.encode("a", add_special_tokens=False))[:1]
    return bool(first_piece) and first_piece[0].startswith(SENTENCEPIECE_SPACE)
