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

The PNG figure draws each completion as a bold header line, then its tokens as text cells wrapped into lines,
coloured on a red-white-green scale from r = -1 to r = +1, with a colour bar, on matplotlib's Agg canvas directly
(the global backend is left alone). Its lengths are in character units across (one per character of a line) and
line units down (one per line).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from .scorer import TokenRewards


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


# ------------------------------------------------------------------ the PNG figure
CHAR_INCHES, LINE_INCHES = 0.085, 0.24  # the size of one character unit and one line unit
TOP_INCHES, BOTTOM_INCHES, SIDE_INCHES = 0.5, 0.85, 0.3  # margins: title above, colour bar below
ZERO_REWARD_RGBA = (0.97, 0.97, 0.97, 1.0)


class ResponseRow(NamedTuple):
    """One response to draw: its header text and its tokens' texts and rewards (same length)."""

    header: str
    texts: list[str]
    rewards: Sequence[float]


class Cell(NamedTuple):
    """One token's cell: its line, left edge and width (character units), shown text and reward."""

    line: float
    x: float
    width: float
    shown: str
    reward: float


def display_text(text: str) -> str:
    """Token text for a figure cell: line breaks and tabs as visible marks, whitespace-only tokens as '␣'."""
    if text == "":
        return "\u2205"
    shown = text.replace("\r", "").replace("\n", "\u21b5").replace("\t", "\u21e5")
    if not shown.strip():
        shown = shown.replace(" ", "\u2423")
    return shown


def layout_cells(rows: list[ResponseRow], line_chars: int) -> tuple[list[Cell], list[tuple[float, str]], float]:
    """Wrap each response's cells into lines of `line_chars` characters (a token with a line break ends its line),
    a header line above each response and half a line between responses; returns the cells, the (line, text) of
    each header and the number of lines."""
    cells, headers, line = [], [], 0
    for row in rows:
        headers.append((line, row.header))
        line += 1
        x = 0.0
        for text, reward in zip(row.texts, row.rewards):
            shown = display_text(text)
            width = max(len(shown), 1) + 0.4
            if x > 0 and x + width > line_chars:
                line, x = line + 1, 0.0
            cells.append(Cell(line, x, min(width, line_chars), shown, reward))
            x += width
            if "\n" in text:
                line, x = line + 1, 0.0
        line += 1 if x > 0 else 0
        line += 0.5  # gap between responses
    return cells, headers, max(line - 0.5, 1)


def save_token_reward_figure(
    rows: list[ResponseRow],
    path: str | Path,
    title: str,
    negative_rgb: tuple[int, int, int],
    positive_rgb: tuple[int, int, int],
    line_chars: int = 90,
    dpi: int = 150,
) -> Path:
    """Draw `rows` as the token-reward heatmap (`negative_rgb` at r = -1, white at 0, `positive_rgb` at r = +1) and
    save it as a PNG at `path` (parent folders are created); returns the path written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.figure import Figure

    colors = [tuple(c / 255 for c in negative_rgb), (1.0, 1.0, 1.0), tuple(c / 255 for c in positive_rgb)]
    cmap = LinearSegmentedColormap.from_list("token_reward", colors)
    norm = Normalize(vmin=-1.0, vmax=1.0)
    cells, headers, total_lines = layout_cells(rows, line_chars)

    width_in = line_chars * CHAR_INCHES + 2 * SIDE_INCHES
    height_in = total_lines * LINE_INCHES + TOP_INCHES + BOTTOM_INCHES
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes(
        [
            SIDE_INCHES / width_in,
            BOTTOM_INCHES / height_in,
            line_chars * CHAR_INCHES / width_in,
            total_lines * LINE_INCHES / height_in,
        ]
    )
    ax.set_xlim(0, line_chars)
    ax.set_ylim(total_lines, 0)
    ax.axis("off")
    draw_cells(ax, cells, headers, lambda reward: cmap(norm(reward)))
    fig.text(0.5, 1 - 0.3 / height_in, title, ha="center", va="center", fontsize=11, parse_math=False)
    colorbar_ax = fig.add_axes([0.3, 0.45 / height_in, 0.4, 0.12 / height_in])
    colorbar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=colorbar_ax, orientation="horizontal")
    colorbar.set_label("token reward r (grey cell: r = 0)", fontsize=8)
    colorbar.ax.tick_params(labelsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=dpi)
    return path


def draw_cells(ax, cells: list[Cell], headers: list[tuple[float, str]], reward_rgba) -> None:
    """The header texts, then each cell's rectangle (`reward_rgba(r)`, light grey at r = 0) and text (white on the
    strongest colours) on `ax`, whose units are characters across and lines down."""
    from matplotlib.patches import Rectangle

    for row, text in headers:
        ax.text(0, row + 0.5, text, va="center", ha="left", fontsize=8.5, fontweight="bold", parse_math=False)
    for row, x, width, shown, reward in cells:
        color = reward_rgba(reward) if reward != 0 else ZERO_REWARD_RGBA
        ax.add_patch(
            Rectangle((x + 0.05, row + 0.08), width - 0.1, 0.84, facecolor=color, edgecolor="#bbbbbb", linewidth=0.3)
        )
        ax.text(
            x + width / 2,
            row + 0.52,
            shown,
            ha="center",
            va="center",
            fontsize=8,
            family="DejaVu Sans Mono",
            color="white" if abs(reward) > 0.75 else "black",
            parse_math=False,
            clip_on=True,
        )
