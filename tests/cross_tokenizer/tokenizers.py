"""A SentencePiece-style BPE with byte fallback (Llama 2's decoder chain), built offline; the byte-level BPE with
merges is `tfpo_hf.testing.tiny_bpe_tokenizer`."""

from tokenizers import Tokenizer, decoders, models, normalizers
from transformers import PreTrainedTokenizerFast


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
