"""Guidance between models whose tokenizers differ: tokens as bytes, a model's probability of the next text
marginalised over its tokenizations."""

from .text_probability import Hypothesis, TextPrefixModel
from .token_bytes import TokenBytes


__all__ = ["Hypothesis", "TextPrefixModel", "TokenBytes"]
