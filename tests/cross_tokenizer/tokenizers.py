"""Small tokenizers of other families, built offline: a byte-level BPE trained on a few sentences and a
SentencePiece-style BPE with byte fallback (Llama 2's decoder chain)."""

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tfpo_hf.testing import SPECIAL_TOKENS


CORPUS = [
    "the cat sat on the mat. the cats sat.",
    "café, naïve, déjà vu: 日本語 text",
    "a catalog of cattle and other cats",
    "def add(a, b):\n    return a + b\n",
] * 20


def small_bpe_tokenizer(vocab_size: int = 320) -> PreTrainedTokenizerFast:
    """A byte-level BPE with merges (so tokens of several bytes, some splitting UTF-8 characters)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|im_end|>")


def byte_fallback_tokenizer() -> PreTrainedTokenizerFast:
    """SentencePiece-style: `▁` marks spaces, a dummy prefix before the first word, `<0xAB>` pieces for bytes
    outside the vocabulary; a few whole words."""
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{byte:02X}>" for byte in range(256)]
    pieces += ["▁", "t", "h", "e", "c", "a", "s", "▁t", "th", "▁th", "▁the", "▁c", "▁ca", "▁cat", "at", "é"]
    vocab = {piece: index for index, piece in enumerate(pieces)}
    merges = [("▁", "t"), ("t", "h"), ("▁t", "h"), ("▁th", "e"), ("▁", "c"), ("▁c", "a"), ("▁ca", "t"), ("a", "t")]
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
