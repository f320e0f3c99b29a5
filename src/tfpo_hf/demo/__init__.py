"""`tfpo-hf demo`: the whole pipeline on the embedded SmolLM2 patient (movie-review openings, a VADER judge), with
its prompts (`movie_review_openings.jsonl`, read by `prompts`), its options (`arguments`), what its steps share
(`context`), the run (`pipeline`, with its steps in `pairs`, `doctors` and `methods`) and its outputs (`report`).
The public names are `pipeline`'s."""

from .pipeline import *  # noqa: F403
from .pipeline import __all__  # noqa: F401
