"""A model reading a text along one token path: a token of the writer that is one token of the reader extends the
path by that token; any other piece by the reader's most probable spelling of it. The cheap way to read another
model's text (one path, one forward per step), and, with one tokenizer on both sides, exactly the token-level
reading: the writer's tokens *are* the path."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from .prompted_paths import PromptedPaths
from .text_probability import TextPrefixModel
from .token_bytes import TokenBytes


class AlignedTextModel:
    """The log-probability of each candidate continuation of a growing text, read along one token path.

    A candidate spelled by one token of the model gets that token's probability after the path (the token-level
    probability, exactly as with one tokenizer); any other candidate gets the probability that the model's next
    bytes are the candidate's, marginalised over its token paths from the path (`TextPrefixModel` rooted there, with
    `beam_size`). Both leave out what the marginal over the whole text counts too: other paths for the text so far,
    and, for a one-token candidate, longer or split spellings; docs/results.md measures the difference.

    Args:
        token_bytes: the bytes of the model's tokens.
        paths: the model's next-token log-probabilities after paths of its prompt; the path read so far is
            committed to it.
        beam_size: paths kept by the rooted marginal (`None`: all of them).
    """

    def __init__(self, token_bytes: TokenBytes, paths: PromptedPaths, beam_size: int | None = 4) -> None:
        self.token_bytes = token_bytes
        self.paths = paths
        self.beam_size = beam_size
        self.path: tuple[int, ...] = ()
        self.text = b""

    def copy(self) -> AlignedTextModel:
        """An independent copy (its own KV cache): a beam branching off."""
        twin = copy.copy(self)
        twin.paths = self.paths.copy()
        return twin

    def log_probs(self, continuations: Sequence[bytes]) -> torch.Tensor:
        """The log-probability of each continuation coming next, shape (len(continuations),); 0 for `b""`."""
        logprobs = self._next_logprobs()
        values = torch.zeros(len(continuations), dtype=torch.float64)
        spelled_by_several = []
        for index, piece in enumerate(continuations):
            ids = self.token_bytes.ids_spelling(piece)
            if ids:
                values[index] = torch.logsumexp(logprobs[ids], dim=0)
            elif piece:
                spelled_by_several.append(index)
        if spelled_by_several:
            rooted = self._rooted()
            values[spelled_by_several] = rooted.log_probs([continuations[index] for index in spelled_by_several])
        return values

    def log_stop_probs(self, token_ids: Sequence[int]) -> torch.Tensor:
        """For tokens spelling no text (an end of turn): their log-probabilities after the path."""
        return self._next_logprobs()[list(token_ids)]

    def advance(self, piece: bytes) -> None:
        """Append `piece` to the text: by its own token when the model has one (the most probable of several
        spelling it), else by the most probable path spelling it exactly."""
        ids = self.token_bytes.ids_spelling(piece)
        if ids:
            logprobs = self._next_logprobs()
            extension: tuple[int, ...] = (max(ids, key=lambda index: float(logprobs[index])),)
        else:
            rooted = self._rooted()
            rooted.advance(piece)
            ending = [hypothesis for hypothesis in rooted.hypotheses if hypothesis.end == len(piece)]
            if not ending:
                raise ValueError(f"No token path of this model ends exactly after {self.text + piece!r}.")
            extension = max(ending, key=lambda hypothesis: hypothesis.log_prob).path
        self._extend(extension)
        self.text += piece

    def advance_token(self, token_id: int) -> None:
        """Append a token that spells no text (a special token)."""
        self._extend((token_id,))

    def _extend(self, tokens: tuple[int, ...]) -> None:
        self.path += tokens
        self.paths.commit(self.path)

    def _next_logprobs(self) -> torch.Tensor:
        """(vocab,) float64 next-token log-probabilities after the path (the committed one: no forward)."""
        return self.paths([self.path])[0].double()

    def _rooted(self) -> TextPrefixModel:
        """The marginal over the token paths that continue this path, for text that comes after it."""
        return TextPrefixModel(
            self.token_bytes, lambda paths: self.paths([self.path + path for path in paths]), self.beam_size
        )
