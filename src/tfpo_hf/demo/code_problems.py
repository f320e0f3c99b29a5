"""The code task's problems: short Python functions to write, each with hidden test cases.

Every problem is one of a few families of small functions (sums, counts, string edits, searches), with constants drawn
from a seeded generator so that no two problems ask for the same function. A family holds the reference
implementation; the test cases are its outputs on random inputs plus the edge cases a careless solution misses
(empty lists, negative numbers, ties, upper case). The problems are built by code, not shipped as data: the same
`seed` always gives the same problems.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any


NUM_PROBLEMS = 320  # as many as the movie-review openings: the same split sizes fit both tasks
CASES_PER_PROBLEM = 10
PROBLEM_SEED = 2026
WORDS = (
    "alpha beta gamma delta river stone cloud tree sun moon light dark sky blue green red a an the of to in ant "
    "mountain sea zebra quick brown fox jumps over lazy dog python code test bug fix run"
).split()


@dataclass(frozen=True)
class CodeProblem:
    """One function to write.

    Args:
        function: the function's name, as the tests call it.
        signature: `name(arguments)`, as the prompt shows it.
        description: what it returns, one sentence after "that".
        cases: `(arguments, expected)` pairs: the tests call `function(*arguments)` and compare with `==`.
    """

    function: str
    signature: str
    description: str
    cases: tuple[tuple[tuple, Any], ...]

    @property
    def message(self) -> str:
        """The user message asking for the function."""
        return (
            f"Write a Python function `{self.signature}` that {self.description}. "
            "Reply with the function only, in one ```python block."
        )


@dataclass(frozen=True)
class Family:
    """A kind of problem: `make(rng)` draws its constants and returns `(description, reference, edge cases)`;
    `sample(rng)` draws one argument tuple."""

    function: str
    parameters: str
    make: Callable[[random.Random], tuple[str, Callable, list[tuple]]]
    sample: Callable[[random.Random], tuple]


def _ints(rng: random.Random, low: int = -30, high: int = 30, longest: int = 9) -> list[int]:
    return [rng.randint(low, high) for _ in range(rng.randint(0, longest))]


def _text(rng: random.Random, longest: int = 8) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(0, longest))]
    return " ".join(word.upper() if rng.random() < 0.2 else word for word in words)


def _sum_divisible(rng):
    k, floor = rng.randint(2, 9), rng.randint(-10, 10)
    return (
        f"returns the sum of the integers in `values` that are divisible by {k} and greater than {floor} (0 when "
        "there are none)",
        lambda values: sum(v for v in values if v % k == 0 and v > floor),
        [([],), ([floor, floor + 1, k * 3, -k],)],
    )


def _count_letter(rng):
    letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
    return (
        f"returns how many times the letter '{letter}' occurs in `text`, counting '{letter}' and "
        f"'{letter.upper()}' alike",
        lambda text: text.lower().count(letter),
        [("",), (letter.upper() * 3,)],
    )


def _words_by_length(rng):
    k = rng.randint(1, 8)
    words, keep = rng.choice(
        [("more than", lambda n: n > k), ("exactly", lambda n: n == k), ("fewer than", lambda n: n < k)]
    )
    return (
        f"returns the list of the words of `text` (split on whitespace) that have {words} {k} characters, "
        "in their original order",
        lambda text: [w for w in text.split() if keep(len(w))],
        [("",), ("x" * k + " " + "y" * (k + 1) + "  z",)],
    )


def _clamp(rng):
    low = rng.randint(-20, 10)
    high = low + rng.randint(1, 25)
    return (
        f"returns `n` limited to the range from {low} to {high}: {low} if `n` is smaller, {high} if it is larger, "
        "`n` itself otherwise",
        lambda n: min(max(n, low), high),
        [(low,), (high,), (low - 1,), (high + 1,)],
    )


def _kth_largest(rng):
    k, missing = rng.randint(1, 5), rng.choice([None, -1, 0])
    return (
        f"returns the {k}-th largest distinct value in `values` (the largest being the 1st), or {missing} when "
        f"`values` holds fewer than {k} distinct values",
        lambda values: sorted(set(values), reverse=True)[k - 1] if len(set(values)) >= k else missing,
        [([],), ([5] * (k + 2),), (list(range(k)) * 2,)],
    )


def _every_kth(rng):
    k, start = rng.randint(2, 6), rng.randint(0, 4)
    return (
        f"returns the characters of `text` at the 0-based positions {start}, {start + k}, {start + 2 * k}, and so "
        f"on every {k} positions, joined into one string",
        lambda text: text[start::k],
        [("",), ("abc"[: max(start - 1, 0)],)],
    )


def _scaled_running_totals(rng):
    k, offset = rng.choice([-3, -2, 2, 3, 4, 5, 10]), rng.choice([-5, -3, -2, -1, 1, 2, 3, 5])
    return (
        f"returns the list of the running totals of `values` (the sum of the first 1, 2, 3, ... elements), each "
        f"multiplied by {k} and then increased by {offset}",
        lambda values: [k * total + offset for total in accumulate(values)],
        [([],), ([0, -1],)],
    )


def _multiple_of(rng):
    a = rng.randint(2, 9)
    b = a * rng.randint(2, 4)
    return (
        f"returns True when `n` is a multiple of {a} but not a multiple of {b}, and False otherwise",
        lambda n: n % a == 0 and n % b != 0,
        [(0,), (-a,), (b,)],
    )


def _count_digits(rng):
    k = rng.randint(0, 8)
    words, keep = rng.choice(
        [("greater than", lambda d: d > k), ("smaller than", lambda d: d < k), ("equal to", lambda d: d == k)]
    )
    return (
        f"returns how many decimal digits of the integer `n`, ignoring its sign, are {words} {k}",
        lambda n: sum(keep(int(d)) for d in str(abs(n))),
        [(0,), (-98765,)],
    )


def _shift_letters(rng):
    k = rng.randint(1, 25)
    return (
        f"returns `text` with every lowercase ASCII letter moved {k} places forward in the alphabet, wrapping "
        "around from 'z' to 'a'; every other character is unchanged",
        lambda text: "".join(chr((ord(c) - 97 + k) % 26 + 97) if "a" <= c <= "z" else c for c in text),
        [("",), ("xyz ABC!",)],
    )


def _first_above(rng):
    k = rng.randint(-10, 20)
    return (
        f"returns the index of the first element of `values` greater than {k}, or -1 when there is none",
        lambda values: next((i for i, v in enumerate(values) if v > k), -1),
        [([],), ([k, k],), ([k + 1],)],
    )


def _frequent_values(rng):
    k, order = rng.randint(2, 4), rng.choice(["increasing", "decreasing"])
    return (
        f"returns the distinct values that occur at least {k} times in `values`, sorted in {order} order",
        lambda values: sorted((v for v, n in Counter(values).items() if n >= k), reverse=order == "decreasing"),
        [([],), ([3] * k + [1] * (k - 1) + [0] * k,)],
    )


def _longest_run(rng):
    k = rng.randint(0, 4)
    return (
        f"returns the length of the longest run of consecutive elements of `values` equal to {k} (0 when {k} "
        "does not occur)",
        lambda values: max((len(run) for run in "".join("1" if v == k else " " for v in values).split()), default=0),
        [([],), ([k, 9, k, k],)],
    )


def _between_descending(rng):
    low = rng.randint(-15, 5)
    high = low + rng.randint(3, 20)
    return (
        f"returns the elements of `values` strictly between {low} and {high}, sorted in decreasing order "
        "(duplicates kept)",
        lambda values: sorted((v for v in values if low < v < high), reverse=True),
        [([],), ([low, high, low + 1, low + 1],)],
    )


def _product_mod(rng):
    m = rng.randint(5, 100)
    return (
        f"returns the product of the elements of `values` at even indices (0, 2, 4, ...), modulo {m}, as a number "
        f"from 0 to {m - 1} (1 for an empty list)",
        lambda values: _product(values[::2]) % m,
        [([],), ([-3, 5, 2],)],
    )


def _product(values: list[int]) -> int:
    result = 1
    for value in values:
        result *= value
    return result


def _reverse_long_words(rng):
    k = rng.randint(1, 8)
    return (
        f"returns `text` with every word (split on whitespace) of more than {k} characters reversed, the words "
        "joined by single spaces",
        lambda text: " ".join(w[::-1] if len(w) > k else w for w in text.split()),
        [("",), ("  " + "q" * (k + 1) + "  ab ",)],
    )


def _sample_ints(rng):
    return (_ints(rng),)


def _sample_text(rng):
    return (_text(rng),)


def _sample_int(rng):
    return (rng.randint(-120, 120),)


def _sample_big_int(rng):
    return (rng.randint(-(10**6), 10**6),)


def _sample_small_ints(rng):
    return (_ints(rng, 0, 4, 12),)


FAMILIES = (
    Family("sum_divisible", "values", _sum_divisible, _sample_ints),
    Family("count_letter", "text", _count_letter, _sample_text),
    Family("words_by_length", "text", _words_by_length, _sample_text),
    Family("clamp", "n", _clamp, _sample_int),
    Family("kth_largest", "values", _kth_largest, _sample_small_ints),
    Family("every_kth", "text", _every_kth, _sample_text),
    Family("scaled_running_totals", "values", _scaled_running_totals, _sample_ints),
    Family("multiple_of", "n", _multiple_of, _sample_int),
    Family("count_digits", "n", _count_digits, _sample_big_int),
    Family("shift_letters", "text", _shift_letters, _sample_text),
    Family("first_above", "values", _first_above, _sample_ints),
    Family("frequent_values", "values", _frequent_values, _sample_small_ints),
    Family("longest_run", "values", _longest_run, _sample_small_ints),
    Family("between_descending", "values", _between_descending, _sample_ints),
    Family("product_mod", "values", _product_mod, _sample_ints),
    Family("reverse_long_words", "text", _reverse_long_words, _sample_text),
)


def code_problems(count: int = NUM_PROBLEMS, seed: int = PROBLEM_SEED) -> list[CodeProblem]:
    """`count` distinct problems of families drawn at random, each with `CASES_PER_PROBLEM` test cases (its edge cases,
    then random inputs); the same `seed` gives the same problems."""
    rng = random.Random(seed)
    problems, seen = [], set()
    for _ in range(50 * count):
        if len(problems) == count:
            return problems
        family = rng.choice(FAMILIES)
        description, reference, edge_cases = family.make(rng)
        if description in seen:
            continue
        seen.add(description)
        inputs = edge_cases + [family.sample(rng) for _ in range(CASES_PER_PROBLEM - len(edge_cases))]
        cases = tuple((tuple(arguments), reference(*arguments)) for arguments in inputs)
        signature = f"{family.function}({family.parameters})"
        problems.append(CodeProblem(family.function, signature, description, cases))
    if len(problems) < count:
        raise ValueError(f"Could not draw {count} distinct code problems: the families allow fewer.")
    return problems
