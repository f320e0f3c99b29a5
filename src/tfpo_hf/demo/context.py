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
from .progress import RunProgress


@dataclass
class DemoContext:
    """One run of the demo, passed to each step. `dataclasses.replace(context, args=...)` gives the same patient
    and judge other arguments (as `benchmarks/sweep_quality.py` does)."""

    args: DemoArguments
    patient: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    judge: Callable[[str], float]
    output_dir: Path
    doctor_base: PreTrainedModel | None = None  # what the doctors start from, when not a copy of the patient
    cross_family_base: PreTrainedModel | None = None  # what the doctor of another family starts from
    cross_family_tokenizer: PreTrainedTokenizerBase | None = None  # its tokenizer (not the patient's)
    progress: RunProgress | None = None  # the finished steps, for a resumed run
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step, in run order
    training_logs: dict[str, list] = field(default_factory=dict)  # log history per trained method

    @classmethod
    def load(cls, args: DemoArguments) -> DemoContext:
        """Create the report directory, then load the judge, the patient (the embedded SmolLM2 by default, the
        packaged pair's 1.5B with `pair`) in the decoding dtype, the doctors' base and the base of the doctor of
        another family (with its tokenizer) in float32 (timed as "load models")."""
        from ..evaluation import get_judge
        from ..utils.embedded_patient import DTYPES, load_patient

        output_dir = Path(args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        clock = time.perf_counter()
        judge = args.demo_task.make_judge() if args.judge == args.demo_task.judge else get_judge(args.judge)
        dtype = DTYPES[args.patient_dtype]
        doctor_base = None
        if args.pair is not None:
            from ..utils.coder_pair import DOCTOR, PATIENT, load_packaged

            patient, tokenizer = load_packaged(PATIENT, dtype)
            doctor_base = load_packaged(DOCTOR)[0]
        else:
            patient, tokenizer = load_patient(args.patient, dtype)
            if args.weak_to_strong:
                doctor_base = load_patient(args.doctor_base)[0]
        context = cls(args, patient, tokenizer, judge, output_dir, doctor_base)
        if args.cross_family_doctor is not None:
            from .arguments import EMBEDDED_DOCTOR

            name = None if args.cross_family_doctor == EMBEDDED_DOCTOR else args.cross_family_doctor
            context.cross_family_base, context.cross_family_tokenizer = load_patient(name)
        context.timings["load models"] = time.perf_counter() - clock
        return context

    @property
    def sampling(self) -> dict:
        """The `generate` keywords of every sampled method."""
        args = self.args
        return dict(do_sample=True, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Record the seconds the `with` block takes as `timings[step]`; once it ends without an error, the step is
        finished in the run's progress (see `resumes`). A step an earlier run finished keeps its time (the block
        only read its results back) and is listed once."""
        clock = time.perf_counter()
        yield
        if self.resumes(step):
            return
        self.timings[step] = time.perf_counter() - clock
        if self.progress is not None:
            self.progress.record("timings", self.timings)
            self.progress.record("finished", [*self.progress.recorded("finished", []), step])

    def run(self, step: str, function: Callable, *args):
        """`function(self, *args)`, timed as `step`."""
        with self.timed(step):
            return function(self, *args)

    def resumes(self, step: str) -> bool:
        """Whether `step` finished in an earlier run whose progress this run resumes (its outputs are on disk)."""
        return self.progress is not None and step in self.progress.recorded("finished", [])

    def record_training_log(self, name: str, history: list) -> None:
        """Keep a trained method's log history (for the report, also when a resumed run reloads the method)."""
        self.training_logs[name] = history
        if self.progress is not None:
            self.progress.record("training_logs", self.training_logs)

    def resume_records(self) -> None:
        """Take the timings and training logs of the finished steps from the run's progress."""
        if self.progress is not None:
            self.timings.update(self.progress.recorded("timings", {}))
            self.training_logs.update(self.progress.recorded("training_logs", {}))
