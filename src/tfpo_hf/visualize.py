"""Show token rewards: a standalone HTML page and a PNG figure with each response's tokens coloured by reward.

Green is a positive reward (chosen responses), red a negative one (rejected responses); the stronger the
colour, the larger |r|. Zero-reward tokens stay uncoloured. In the HTML page, hovering a token shows its
reward, Delta (the gap between the patient's two faces) and S (the normalised gap).

    >>> import tempfile, pathlib
    >>> from tfpo_hf import TokenRewardScorer
    >>> from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer
    >>> tokenizer = tiny_tokenizer()
    >>> scorer = TokenRewardScorer(tiny_causal_lm(), tokenizer)
    >>> chosen = scorer.score("Hi", "Hello there!")
    >>> rejected = scorer.score("Hi", "No.", chosen=False)
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> html_path = render_token_rewards_html(chosen, folder / "rewards.html", tokenizer=tokenizer)
    >>> png_path = plot_token_rewards_png([chosen, rejected], folder / "rewards.png", labels=["chosen", "rejected"])
    >>> sorted(path.name for path in folder.iterdir())
    ['rewards.html', 'rewards.png']

Tokens are shown as text: with a `tokenizer`, each token id is decoded on its own; without one, the raw
token strings are cleaned: byte-level BPE symbols are mapped back to their bytes ('Ġ' is a space, 'Ċ' a
newline) and SentencePiece's '▁' becomes a space.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from .rewards import TokenRewards
from .visualize_png import ResponseRow, save_token_reward_figure


POSITIVE_RGB = (22, 163, 74)
NEGATIVE_RGB = (220, 38, 38)


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte-to-unicode table used by byte-level BPE tokenizers (SmolLM2, Llama 3, Qwen...)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    shift = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + shift)
            shift += 1
    return {chr(code): byte for byte, code in zip(printable, codes)}


def clean_token(token: str) -> str:
    """Readable text of one raw token string (byte-level BPE symbols back to bytes, '▁' to a space).

    A token holding only part of a multi-byte UTF-8 character shows its bytes escaped (e.g. '\\xe2').
    """
    byte_fallback = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", token)  # SentencePiece byte fallback, e.g. <0x0A>
    if byte_fallback:
        value = int(byte_fallback.group(1), 16)
        return chr(value) if value < 0x80 else f"\\x{value:02x}"
    decoder = _byte_decoder()
    if "▁" not in token and token and all(ch in decoder for ch in token):
        raw = bytes(decoder[ch] for ch in token)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            if all(ord(ch) < 256 for ch in token):  # Latin-1 text of a non-byte-level vocabulary
                return token
            return raw.decode("utf-8", errors="backslashreplace")
    return token.replace("▁", " ")


def token_texts(token_rewards: TokenRewards, tokenizer=None) -> list[str]:
    """The text of each token: decoded one id at a time with `tokenizer` if given, else `clean_token`."""
    if tokenizer is not None:
        return [
            tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            for token_id in token_rewards.token_ids
        ]
    return [clean_token(token) for token in token_rewards.tokens]


def reward_color(reward: float, max_abs: float = 1.0) -> str:
    """CSS colour of a reward: transparent at 0, green for r > 0, red for r < 0, opacity growing with |r|."""
    if reward == 0 or reward != reward:
        return "transparent"
    rgb = POSITIVE_RGB if reward > 0 else NEGATIVE_RGB
    alpha = 0.15 + 0.8 * min(abs(reward) / max_abs, 1.0)
    return f"rgba({rgb[0]}, {rgb[1]}, {rgb[2]}, {alpha:.3f})"


def _as_list(token_rewards: TokenRewards | Sequence[TokenRewards]) -> list[TokenRewards]:
    if isinstance(token_rewards, TokenRewards):
        return [token_rewards]
    items = list(token_rewards)
    if not all(isinstance(item, TokenRewards) for item in items):
        raise TypeError("Expected a TokenRewards or a list of them (from TokenRewardScorer.score).")
    return items


def _labels(items: list[TokenRewards], labels: Sequence[str] | None) -> list[str]:
    if labels is None:
        return [f"Response {i + 1}" for i in range(len(items))]
    if len(labels) != len(items):
        raise ValueError(f"Got {len(labels)} labels for {len(items)} responses.")
    return [str(label) for label in labels]


def _summary(item: TokenRewards) -> str:
    return (
        f"{len(item.rewards)} tokens, {item.nonzero_fraction:.0%} non-zero, "
        f"sum r = {sum(item.rewards):+.3f}, mean Delta = {sum(item.delta) / max(len(item.delta), 1):.4f}"
    )


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 64em; color: #111; }
h1 { font-size: 1.4em; } h2 { font-size: 1.05em; margin-bottom: 0.2em; }
.meta { color: #555; font-size: 0.9em; margin: 0 0 0.4em 0; }
.response { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; white-space: pre-wrap;
            word-break: break-word; line-height: 1.9; border: 1px solid #ddd; border-radius: 4px; padding: 0.6em; }
.tok { border-radius: 3px; padding: 1px 0; }
.tok:hover { outline: 1px solid #333; }
.mark { color: #999; }
.legend span { display: inline-block; padding: 0 0.5em; margin-right: 0.4em; border-radius: 3px; }
"""


def render_token_rewards_html(
    token_rewards: TokenRewards | Sequence[TokenRewards],
    path: str | Path,
    title: str | None = None,
    tokenizer=None,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write a standalone HTML page (no scripts, no external files) showing each response's token rewards.

    Args:
        token_rewards: one `TokenRewards` (from `TokenRewardScorer.score`) or a list of them.
        path: the HTML file to write; parent folders are created.
        title: page title (default "Token rewards").
        tokenizer: optional; decodes each token id on its own for display.
        labels: optional name of each response (default "Response 1", ...).

    Returns:
        The path written.
    """
    items = _as_list(token_rewards)
    names = _labels(items, labels)
    title = title or "Token rewards"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        '<p class="legend">Colour = reward r: '
        f'<span style="background:{reward_color(0.9)}">r &gt; 0</span>'
        f'<span style="background:{reward_color(-0.9)}">r &lt; 0</span>'
        '<span style="border:1px solid #ddd">r = 0</span> '
        "(stronger = larger |r|; hover a token for r, Delta and S).</p>",
    ]
    parts += [_completion_section(item, name, tokenizer) for item, name in zip(items, names)]
    parts.append("</body></html>\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def plot_token_rewards_png(
    token_rewards: TokenRewards | Sequence[TokenRewards],
    path: str | Path,
    title: str | None = None,
    tokenizer=None,
    labels: Sequence[str] | None = None,
    line_chars: int = 90,
    dpi: int = 150,
) -> Path:
    """Draw the token rewards as a heatmap of text cells (one cell per token, wrapped into lines) and save a PNG.

    Cell colour follows a red-white-green scale from r = -1 to r = +1, with a colour bar; cell width is the
    token's length in characters. Uses matplotlib's Agg canvas directly (the global backend is left alone).

    Args:
        token_rewards: one `TokenRewards` or a list of them.
        path: the PNG file to write; parent folders are created.
        title: figure title (default "Token rewards").
        tokenizer: optional; decodes each token id on its own for display.
        labels: optional name of each response.
        line_chars: width of a line of cells, in characters.
        dpi: resolution of the PNG.

    Returns:
        The path written.
    """
    items = _as_list(token_rewards)
    rows = [
        ResponseRow(f"{name}: {_summary(item)}", token_texts(item, tokenizer), item.rewards)
        for item, name in zip(items, _labels(items, labels))
    ]
    return save_token_reward_figure(
        rows, path, title or "Token rewards", NEGATIVE_RGB, POSITIVE_RGB, line_chars=line_chars, dpi=dpi
    )


def _completion_section(item: TokenRewards, name: str, tokenizer=None) -> str:
    """The HTML section of one response: its name, its summary and its tokens as coloured spans."""
    spans = [_token_span(item, t, text) for t, text in enumerate(token_texts(item, tokenizer))]
    return (
        f'<section><h2>{html.escape(name)}</h2><p class="meta">{html.escape(_summary(item))}</p>'
        f'<div class="response">{"".join(spans)}</div></section>'
    )


def _token_span(item: TokenRewards, t: int, text: str) -> str:
    """Token `t` of a response as a span coloured by its reward, with its r, Delta and S in the tooltip."""
    reward, delta, normalized = item.rewards[t], item.delta[t], item.normalized[t]
    tooltip = (
        f"#{t} token {item.token_ids[t]} {item.tokens[t]!r}\n"
        f"reward {reward:+.4f}\nDelta {delta:.4f}\nS {normalized:.4f}"
    )
    shown = html.escape(text)
    if text == "":
        shown = '<span class="mark">\u2205</span>'
    elif "\n" in text:  # keep the line break, but make the token visible and hoverable
        shown = shown.replace("\n", '<span class="mark">\u21b5</span>\n')
    return (
        f'<span class="tok" style="background:{reward_color(reward)}" '
        f'title="{html.escape(tooltip, quote=True)}">{shown}</span>'
    )
