"""The demo's prompts: the shipped movie-review openings, the chat prompt made of one, and the seeded split of a
task's prompts into pair, validation and evaluation prompts."""

from __future__ import annotations

import json
import random
from importlib import resources
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from .arguments import DemoArguments


PROMPT_TEMPLATE = 'Continue this movie review in one or two sentences: "{opening}"'


def load_prompts() -> list[dict]:
    """The shipped movie-review openings with their human ratings."""
    text = resources.files("tfpo_hf.demo").joinpath("movie_review_openings.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def chat(opening: str) -> list[dict[str, str]]:
    """The one-message conversation asking the patient to continue `opening`."""
    return user_turn(PROMPT_TEMPLATE.format(opening=opening))


def split_prompts(args: DemoArguments) -> tuple[list, list, list]:
    """(pair prompts, validation prompts, evaluation prompts) of `args.task`, as one-message chats: disjoint, from one
    seeded shuffle of the task's messages."""
    messages = args.demo_task.messages()
    random.Random(args.seed).shuffle(messages)
    train = [user_turn(m) for m in messages[: args.train_prompts]]
    evaluation = [user_turn(m) for m in messages[len(messages) - args.eval_prompts :]]
    return train[: -args.validation_prompts], train[-args.validation_prompts :], evaluation


def user_turn(message: str) -> list[dict[str, str]]:
    """The one-message conversation of `message`."""
    return [{"role": "user", "content": message}]
