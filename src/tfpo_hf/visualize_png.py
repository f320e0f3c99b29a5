"""The PNG figure of token rewards behind `tfpo_hf.visualize.plot_token_rewards_png`: each response is a bold header
line then its tokens as text cells wrapped into lines, coloured on a red-white-green scale from r = -1 to r = +1,
with a colour bar. Drawn on matplotlib's Agg canvas directly (the global backend is left alone).

Lengths are in character units across (one unit per character of a line) and line units down (one per line).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple


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
