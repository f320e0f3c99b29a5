"""Tests of `tfpo_hf.rewards.visualize`: the HTML page and the PNG figure of token rewards (laid out by `visualize_png`)."""

from __future__ import annotations

import html
import re

import pytest

from tfpo_hf.rewards.scorer import TokenRewards
from tfpo_hf.rewards.visualize import (
    NEGATIVE_RGB,
    POSITIVE_RGB,
    ResponseRow,
    clean_token,
    display_text,
    layout_cells,
    plot_token_rewards_png,
    render_token_rewards_html,
    reward_color,
    token_texts,
)
from tfpo_hf.testing import tiny_tokenizer


def make(tokens, rewards, token_ids=None):
    n = len(tokens)
    return TokenRewards(
        token_ids=token_ids if token_ids is not None else list(range(100, 100 + n)),
        tokens=tokens,
        rewards=rewards,
        delta=[abs(r) / 2 for r in rewards],
        normalized=[abs(r) for r in rewards],
    )


@pytest.fixture
def chosen():
    # Byte-level BPE token strings, as SmolLM2's tokenizer returns them: 'Ġ' is a space, 'Ċ' a newline.
    return make(
        ["Hello", "Ġworld", "Ġ<", "b", ">", "Ċ", "Ġ&", "ĠcafÃ©", "<|im_end|>"],
        [0.9, 0.0, 0.6, 0.0, 0.0, 0.8, 0.0, 0.55, 0.7],
    )


@pytest.fixture
def rejected():
    return make(["No", "Ġthanks", "."], [-0.95, 0.0, -0.6])


def spans(page):
    """(style, title, text) of every token span in the page."""
    return re.findall(
        r'<span class="tok" style="([^"]*)" title="([^"]*)">(.*?)</span>(?=<span class="tok"|</div>)', page, re.S
    )


def test_clean_token():
    assert clean_token("Ġworld") == " world"
    assert clean_token("Ċ") == "\n"
    assert clean_token("ĉ") == "\t"
    assert clean_token("ĠcafÃ©") == " café"
    assert clean_token("ĠâĢĶ") == " \u2014"  # em dash, three bytes
    assert clean_token("<|im_end|>") == "<|im_end|>"
    assert clean_token("▁the") == " the"  # SentencePiece
    assert clean_token("<0x0A>") == "\n"  # SentencePiece byte fallback
    assert clean_token("âĢ") == "\\xe2\\x80"  # half a character: its bytes, escaped


def test_html_written_escaped_and_coloured(tmp_path, chosen, rejected):
    path = render_token_rewards_html(
        [chosen, rejected], tmp_path / "out" / "rewards.html", title="Tiny <test>", labels=["chosen", "rejected"]
    )
    assert path.exists() and path.stat().st_size > 500
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "</html>" in page
    assert "<script" not in page and "http" not in page  # standalone
    assert "<title>Tiny &lt;test&gt;</title>" in page
    found = spans(page)
    assert len(found) == 9 + 3
    texts = [text for _, _, text in found]
    # Tokens are readable (markers decoded) and HTML-escaped: '<' never reaches the page raw.
    assert texts[0] == "Hello" and texts[1] == " world"
    assert texts[2] == " &lt;" and texts[4] == "&gt;" and texts[6] == " &amp;"
    assert texts[7] == " café"
    assert texts[8] == "&lt;|im_end|&gt;"
    assert "\n" in texts[5] and "Ċ" not in "".join(texts) and "Ġ" not in "".join(texts)
    assert "<b>" not in page and "<|im_end|>" not in page
    # Green for positive, red for negative, nothing for zero; stronger for larger |r|.
    styles = [style for style, _, _ in found]
    green, red = "rgba({}, {}, {}".format(*POSITIVE_RGB), "rgba({}, {}, {}".format(*NEGATIVE_RGB)
    assert green in styles[0] and red in styles[9]
    assert styles[0] != styles[9]
    assert "transparent" in styles[1] and "transparent" in styles[10]
    alpha = lambda style: float(style.rsplit(",", 1)[1].rstrip(")"))  # noqa: E731
    assert alpha(styles[9]) > alpha(styles[11]) and alpha(styles[0]) > alpha(styles[2])
    # Tooltips carry reward, Delta and S.
    title = html.unescape(found[9][1])
    assert "reward -0.9500" in title and "Delta 0.4750" in title and "S 0.9500" in title
    assert "chosen" in page and "rejected" in page


def test_reward_color():
    assert reward_color(0.0) == "transparent"
    assert reward_color(0.5).startswith("rgba({}, {}, {}".format(*POSITIVE_RGB))
    assert reward_color(-0.5).startswith("rgba({}, {}, {}".format(*NEGATIVE_RGB))
    assert reward_color(0.5) != reward_color(0.9)


def test_html_with_tokenizer_and_single_response(tmp_path):
    tokenizer = tiny_tokenizer()
    ids = tokenizer("a <b> c\n", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    item = make(tokenizer.convert_ids_to_tokens(ids), [0.5] * len(ids), token_ids=ids)
    assert token_texts(item, tokenizer) == token_texts(item) == ["a", " ", "<", "b", ">", " ", "c", "\n", "<|im_end|>"]
    page = render_token_rewards_html(item, tmp_path / "one.html", tokenizer=tokenizer).read_text(encoding="utf-8")
    assert [text for _, _, text in spans(page)][2] == "&lt;"
    assert "Response 1" in page


def test_bad_arguments(tmp_path, chosen):
    with pytest.raises(ValueError, match="labels"):
        render_token_rewards_html([chosen], tmp_path / "x.html", labels=["a", "b"])
    with pytest.raises(TypeError):
        render_token_rewards_html(["not rewards"], tmp_path / "x.html")


def test_png(tmp_path, chosen, rejected):
    long = make([f"Ġtok{i}" for i in range(60)], [((-1) ** i) * (i % 7) / 7 for i in range(60)])
    path = plot_token_rewards_png(
        [chosen, rejected, long], tmp_path / "fig" / "rewards.png", labels=["chosen", "rejected", "$long$"]
    )
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000
    from matplotlib.image import imread

    image = imread(path)
    height, width = image.shape[:2]
    assert width > 800 and height > 300
    # Both colours are drawn: some pixels are clearly green, some clearly red.
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    assert ((g - r > 0.3) & (g - b > 0.3)).sum() > 100
    assert ((r - g > 0.3) & (r - b > 0.3)).sum() > 100
    # More responses, taller figure.
    small = imread(plot_token_rewards_png(chosen, tmp_path / "one.png"))
    assert small.shape[0] < height


def test_png_layout_wraps_lines_and_breaks_at_newlines():
    rows = [
        ResponseRow("first", ["abcd", "efgh", "ij\n", "k"], [0.5, 0.0, -0.5, 0.1]),
        ResponseRow("second", ["", "\t"], [0, 0]),
    ]
    cells, headers, total_lines = layout_cells(rows, line_chars=10)
    assert headers == [(0, "first"), (4.5, "second")]
    # 'abcd' and 'efgh' share line 1 (8.8 of 10 characters), 'ij↵' wraps to line 2 and its line break sends 'k' on.
    assert [(c.line, c.shown) for c in cells] == [
        (1, "abcd"),
        (1, "efgh"),
        (2, "ij\u21b5"),
        (3, "k"),
        (5.5, "\u2205"),
        (5.5, "\u21e5"),
    ]
    assert total_lines == 6.5  # the second response's header and line, after half a line of gap
    assert display_text(" ") == "\u2423" and display_text("a b") == "a b"
