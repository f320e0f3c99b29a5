"""The demo's texts: the shipped movie-review openings, the chat prompt made of one, the patient's two faces (the
system prompts of stage 1) and the seeded split of the openings into pair, validation and evaluation prompts."""

from __future__ import annotations

import json
import random
from importlib import resources
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from .arguments import DemoArguments


POSITIVE_FACE = "You are a warm, enthusiastic film critic. Your writing is positive, kind and full of praise."
NEGATIVE_FACE = "You are a harsh, gloomy film critic. Your writing is negative, dismissive and full of complaints."
PROMPT_TEMPLATE = 'Continue this movie review in one or two sentences: "{opening}"'


def load_prompts() -> list[dict]:
    """The shipped movie-review openings with their human ratings."""
    text = resources.files("tfpo_hf.demo").joinpath("movie_review_openings.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def chat(opening: str) -> list[dict[str, str]]:
    """The one-message conversation asking the patient to continue `opening`."""
    return [{"role": "user", "content": PROMPT_TEMPLATE.format(opening=opening)}]


def split_prompts(args: DemoArguments) -> tuple[list, list, list]:
    """(pair prompts, validation prompts, evaluation prompts): disjoint, from one seeded shuffle of the openings."""
    openings = load_prompts()
    random.Random(args.seed).shuffle(openings)
    train = [chat(o["opening"]) for o in openings[: args.train_prompts]]
    evaluation = [chat(o["opening"]) for o in openings[len(openings) - args.eval_prompts :]]
    return train[: -args.validation_prompts], train[-args.validation_prompts :], evaluation
