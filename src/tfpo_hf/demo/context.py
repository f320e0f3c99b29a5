"""`DemoContext`: what every step of the demo shares (its arguments, the patient and its tokenizer, the judge, the
report directory) and what the steps record in it (seconds per step, training log histories)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .arguments import DemoArguments


@dataclass
class DemoContext:
    """One run of the demo, passed to each step. `dataclasses.replace(context, args=...)` gives the same patient
    and judge other arguments (as `benchmarks/sweep_quality.py` does)."""

    args: DemoArguments
    patient: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    judge: Callable[[str], float]
    output_dir: Path
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step, in run order
    training_logs: dict[str, list] = field(default_factory=dict)  # log history per trained method

    @classmethod
    def load(cls, args: DemoArguments) -> DemoContext:
        """Create the report directory, then load the judge and the embedded patient (timed as "load patient")."""
        from ..evaluation import get_judge
        from ..utils.embedded_patient import DTYPES, load_default_patient

        output_dir = Path(args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        clock = time.perf_counter()
        judge = get_judge(args.judge)
        patient, tokenizer = load_default_patient(dtype=DTYPES[args.patient_dtype])
        context = cls(args, patient, tokenizer, judge, output_dir)
        context.timings["load patient"] = time.perf_counter() - clock
        return context

    @property
    def sampling(self) -> dict:
        """The `generate` keywords of every sampled method."""
        args = self.args
        return dict(do_sample=True, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Record the seconds the `with` block takes as `timings[step]`."""
        clock = time.perf_counter()
        yield
        self.timings[step] = time.perf_counter() - clock
