"""A model's probability of the text that comes next, whatever tokens spell it: the quantity that guidance compares
across models whose tokenizers differ.

A model writes a response as tokens; a text y (bytes) can be spelled by many token paths. The *prefix probability*

    Q(y) = sum of p(u | prompt) over the token paths u = u_1 ... u_n such that y is a prefix of bytes(u)
           and bytes(u_1 ... u_{n-1}) is a strict prefix of y (the last token ends at or past the end of y)

is the probability that the model's next bytes are y, marginalised over its tokenizations; the probability that it
writes s after y is Q(y s) / Q(y). Grouping the paths by their last boundary inside y,

    Q(y) = sum over paths h with bytes(h) = y[:e], e < |y|, of p(h | prompt) * M(h, y[e:]),
    M(h, r) = sum of p(t | h) over the tokens t whose bytes start with r,

so Q needs a forward pass at each *boundary path* h (a path whose bytes end inside y) and, per path, one range sum
over the tokens sorted by their bytes. `TextPrefixModel` keeps those paths (its hypotheses) as the text grows, so each
new piece of text costs forwards only at the boundaries inside it. Kept in full it is exact; `beam_size` keeps the
most probable paths only (the stated approximation, measured against the exact value in docs/results.md).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .token_bytes import TokenBytes


NextTokenLogprobs = Callable[[Sequence[tuple[int, ...]]], torch.Tensor]
"""Maps token paths (the ids after the prompt) to their next-token log-probabilities, shape (len(paths), vocab)."""


@dataclass(frozen=True)
class Hypothesis:
    """One token path spelling the first `end` bytes of the text, with its log-probability given the prompt."""

    path: tuple[int, ...]
    end: int
    log_prob: float


class TextPrefixModel:
    """The log-probability of each candidate continuation of a growing text, marginalised over the model's
    tokenizations of the text and of the continuation.

    Args:
        token_bytes: the bytes of the model's tokens.
        next_token_logprobs: the model's next-token log-probabilities after token paths (see `NextTokenLogprobs`);
            called with batches of paths, each path once while it is needed.
        beam_size: keep at most this many paths (the most probable) per text and per level of a continuation;
            `None` keeps every path (exact).

    Example:
        >>> from tfpo_hf.cross_tokenizer import PromptedPaths, TextPrefixModel, TokenBytes
        >>> from tfpo_hf.testing import tiny_bpe_tokenizer, tiny_causal_lm
        >>> tokenizer = tiny_bpe_tokenizer()
        >>> doctor = tiny_causal_lm(vocab_size=len(tokenizer))
        >>> text_model = TextPrefixModel(TokenBytes.from_tokenizer(tokenizer), PromptedPaths(doctor, [1, 40, 41]))
        >>> text_model.log_probs([b" cat", b" dog"]).shape  # log p(" cat" next), log p(" dog" next)
        torch.Size([2])
        >>> text_model.advance(b" cat")
        >>> text_model.text
        b' cat'
    """

    def __init__(
        self, token_bytes: TokenBytes, next_token_logprobs: NextTokenLogprobs, beam_size: int | None = None
    ) -> None:
        if beam_size is not None and beam_size < 1:
            raise ValueError(f"beam_size must be a positive number of paths or None (exact), got {beam_size}.")
        self.token_bytes = token_bytes
        self.next_token_logprobs = next_token_logprobs
        self.beam_size = beam_size
        self.text = b""
        self.hypotheses = [Hypothesis((), 0, 0.0)]
        self._logprobs: dict[tuple[int, ...], torch.Tensor] = {}
        self._log_prefix_prob = 0.0

    def copy(self, next_token_logprobs: NextTokenLogprobs) -> TextPrefixModel:
        """An independent copy reading `next_token_logprobs` (a copy of this one's: a beam branching off)."""
        twin = copy.copy(self)
        twin.next_token_logprobs = next_token_logprobs
        twin.hypotheses = list(self.hypotheses)
        twin._logprobs = dict(self._logprobs)
        return twin

    def log_probs(self, continuations: Sequence[bytes]) -> torch.Tensor:
        """log Q(text + s) - log Q(text) for each continuation s, shape (len(continuations),); -inf where the
        model cannot write s (no token path spells it), 0 for `b""`."""
        expanded = iter(self._expand_all([self.text + piece for piece in continuations if piece]))
        log_prefix_probs = torch.tensor(
            [next(expanded)[0] if piece else self._log_prefix_prob for piece in continuations], dtype=torch.float64
        )
        return log_prefix_probs - self._log_prefix_prob

    def advance(self, piece: bytes) -> None:
        """Append `piece` to the text: keep the paths that can still spell what comes next (the `beam_size` with
        the largest shares of Q(text), among them the most probable path ending at the end of the text; all of them
        when exact)."""
        text = self.text + piece
        log_prefix_prob, interior, exact_ends = self._expand(text)
        if log_prefix_prob == float("-inf"):
            raise ValueError(f"No token path of this model spells {text!r}: it cannot follow this text.")
        shares = [
            (self._share(hypothesis, text), hypothesis) for hypothesis in self.hypotheses + interior + exact_ends
        ]
        shares = sorted((pair for pair in shares if pair[0] > float("-inf")), key=lambda pair: pair[0], reverse=True)
        kept = shares[: self.beam_size]
        ending_here = [pair for pair in shares if pair[1].end == len(text)]
        if ending_here and not any(hypothesis.end == len(text) for _, hypothesis in kept):
            # Paths ending inside the text may all need a continuation that does not come; the most probable path
            # ending at its end can go on with any bytes (with single-byte tokens): the beam never runs dry.
            kept[-1] = ending_here[0]
        self.text = text
        self.hypotheses = [hypothesis for _, hypothesis in kept]
        self._log_prefix_prob = _log_sum([share for share, _ in kept])
        live = {hypothesis.path for hypothesis in self.hypotheses}
        self._logprobs = {path: logprobs for path, logprobs in self._logprobs.items() if path in live}

    def log_stop_probs(self, token_ids: Sequence[int]) -> torch.Tensor:
        """For tokens spelling no text (an end of turn): the log-probability that the model writes each of them
        right after the text, shape (len(token_ids),): the paths ending at the text's end, times their probability
        of the token, over Q(text)."""
        ending = self._ending_at_text_end()
        if not ending or not token_ids:
            return torch.full((len(token_ids),), float("-inf"), dtype=torch.float64)
        self._compute_logprobs([hypothesis.path for hypothesis in ending])
        ids = list(token_ids)
        joint = torch.stack([hypothesis.log_prob + self._logprobs[hypothesis.path][ids] for hypothesis in ending])
        return torch.logsumexp(joint, dim=0) - self._log_prefix_prob

    def advance_token(self, token_id: int) -> None:
        """Append a token that spells no text (a special token): the paths ending at the text's end go on with it;
        the others cannot have it inside a piece of text and are dropped."""
        ending = self._ending_at_text_end()
        self._compute_logprobs([hypothesis.path for hypothesis in ending])
        extended = [
            Hypothesis(hypothesis.path + (token_id,), hypothesis.end, hypothesis.log_prob + float(logprobs[token_id]))
            for hypothesis in ending
            for logprobs in [self._logprobs[hypothesis.path]]
        ]
        extended = [hypothesis for hypothesis in extended if hypothesis.log_prob > float("-inf")]
        if not extended:
            raise ValueError(f"This model cannot write token {token_id} after {self.text!r}.")
        self.hypotheses = self._most_probable(extended)
        self._log_prefix_prob = _log_sum([hypothesis.log_prob for hypothesis in self.hypotheses])
        self._logprobs = {}

    def _ending_at_text_end(self) -> list[Hypothesis]:
        """The kept paths that end exactly at the end of the text (those a token spelling no text can follow)."""
        return [hypothesis for hypothesis in self.hypotheses if hypothesis.end == len(self.text)]

    def _expand(self, text: bytes) -> tuple[float, list[Hypothesis], list[Hypothesis]]:
        """log Q(text) from the kept paths, with the paths it passes through past the current text: those ending
        inside the new bytes (interior) and those ending exactly at the end of `text`."""
        return self._expand_all([text])[0]

    def _expand_all(self, texts: Sequence[bytes]) -> list[tuple[float, list[Hypothesis], list[Hypothesis]]]:
        """`_expand` of each text, level by level for all of them at once: one batch of forwards per level."""
        expansions = [([], [], []) for _ in texts]  # per text: Q's terms, interior paths, paths ending at its end
        levels = [[hypothesis for hypothesis in self.hypotheses if hypothesis.end < len(text)] for text in texts]
        while any(levels):
            self._compute_logprobs([hypothesis.path for level in levels for hypothesis in level])
            for index, (text, level) in enumerate(zip(texts, levels)):
                terms, interior, exact_ends = expansions[index]
                for hypothesis in level:
                    logprobs = self._logprobs[hypothesis.path]
                    rest = text[hypothesis.end :]
                    covering = self._log_mass(logprobs, rest)
                    if covering > float("-inf"):
                        terms.append(hypothesis.log_prob + covering)
                    for token in self.token_bytes.ids_spelling(rest):
                        log_prob = hypothesis.log_prob + float(logprobs[token])
                        exact_ends.append(Hypothesis(hypothesis.path + (token,), len(text), log_prob))
                levels[index] = self._most_probable(self._children(level, text))
                interior.extend(levels[index])
        return [(_log_sum(terms), interior, exact_ends) for terms, interior, exact_ends in expansions]

    def _children(self, level: list[Hypothesis], text: bytes) -> list[Hypothesis]:
        """The paths one token longer than those of `level` (whose next-token log-probabilities are known) that end
        inside `text`, past the current text (those ending inside the current text are hypotheses already, or
        pruned)."""
        children = []
        for hypothesis in level:
            logprobs = self._logprobs[hypothesis.path]
            rest = text[hypothesis.end :]
            for length in range(1, min(len(rest), self.token_bytes.max_length + 1)):
                if hypothesis.end + length <= len(self.text):
                    continue
                for token in self.token_bytes.ids_spelling(rest[:length]):
                    children.append(
                        Hypothesis(
                            hypothesis.path + (token,),
                            hypothesis.end + length,
                            hypothesis.log_prob + float(logprobs[token]),
                        )
                    )
        return children

    def _most_probable(self, hypotheses: list[Hypothesis]) -> list[Hypothesis]:
        """The `beam_size` most probable paths (all of them when exact)."""
        if self.beam_size is None or len(hypotheses) <= self.beam_size:
            return hypotheses
        return sorted(hypotheses, key=lambda hypothesis: hypothesis.log_prob, reverse=True)[: self.beam_size]

    def _share(self, hypothesis: Hypothesis, text: bytes) -> float:
        """log of what `hypothesis` alone adds to Q(text), the shares of all paths summing to Q(text): p(h) for a
        path ending at the end of `text`; for one ending inside it, p(h) times the mass of its tokens reaching
        *past* the end (those ending exactly there are paths of their own). -inf: it can add nothing to what
        follows."""
        if hypothesis.end == len(text):
            return hypothesis.log_prob
        reaching_past = self._log_mass(self._logprobs[hypothesis.path], text[hypothesis.end :], past_the_end=True)
        return hypothesis.log_prob + reaching_past

    def _log_mass(self, logprobs: torch.Tensor, rest: bytes, past_the_end: bool = False) -> float:
        """log of the probability, under `logprobs` (vocab,), of the tokens whose bytes start with `rest` (with
        `past_the_end`, only those longer than `rest`); -inf when there are none."""
        start, end = self.token_bytes.prefix_range(rest)
        if past_the_end:
            start += len(self.token_bytes.ids_spelling(rest))  # sorted first in the range: the tokens equal to `rest`
        if end <= start:
            return float("-inf")
        return float(torch.logsumexp(logprobs[self.token_bytes.order[start:end]], dim=0))

    def _compute_logprobs(self, paths: list[tuple[int, ...]]) -> None:
        """Run the model once on the paths whose next-token log-probabilities are not known yet."""
        missing = list(dict.fromkeys(path for path in paths if path not in self._logprobs))
        if missing:
            for path, logprobs in zip(missing, self.next_token_logprobs(missing)):
                self._logprobs[path] = logprobs.double()  # sums of many small terms: kept in float64


def _log_sum(log_values: list[float]) -> float:
    """log of the sum of the exp of `log_values` (-inf for none)."""
    if not log_values:
        return float("-inf")
    return float(torch.logsumexp(torch.tensor(log_values, dtype=torch.float64), dim=0))
