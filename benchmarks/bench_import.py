"""Import cost of `tfpo_hf`: the lazy package versus what `import tfpo_hf` used to cost.

Each variant runs in fresh interpreters (`--runs` each, default 5, interleaved so a noisy neighbour hits both
alike), and the wall time of the whole subprocess (interpreter start included) is timed:

- lazy:  `import tfpo_hf; tfpo_hf.DoctorLogitsProcessor` (what decoding needs), and
- eager: `import tfpo_hf.training.trainer, tfpo_hf.rewards.scorer, tfpo_hf.evaluation, tfpo_hf.guidance.guided_model, tfpo_hf.guidance.logits_process`
  (what the old eager `__init__` imported: the training stack, trl/datasets, and the evaluation extras).

Prints the median and minimum of each, and the eager/lazy ratio of the medians. Two more rows give context: the
bare interpreter (`pass`), and the floor any decoding user pays (torch and the transformers classes
`logits_process` subclasses), so lazy - floor is what tfpo_hf itself still adds.

    python benchmarks/bench_import.py [--runs 5]
    python benchmarks/bench_import.py --smoke    # one run of each, no warm-up: seconds
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


VARIANTS = {
    "interpreter only": "pass",
    "floor: torch + transformers' LogitsProcessor": "import torch; from transformers import LogitsProcessor",
    "lazy:  tfpo_hf.DoctorLogitsProcessor": "import tfpo_hf; tfpo_hf.DoctorLogitsProcessor",
    "eager: old `import tfpo_hf`": (
        "import tfpo_hf.training.trainer, tfpo_hf.rewards.scorer, tfpo_hf.evaluation, tfpo_hf.guidance.guided_model, tfpo_hf.guidance.logits_process"
    ),
}


def time_once(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh subprocesses per variant (default 5)")
    parser.add_argument(
        "--smoke", action="store_true", help="a run of seconds, what the tests run: --runs 1 and no untimed warm-up"
    )
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(runs=1)
        args = parser.parse_args()

    for code in VARIANTS.values() if not args.smoke else ():  # warm the OS file cache and __pycache__ once, untimed
        time_once(code)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.runs):
        for name, code in VARIANTS.items():
            times[name].append(time_once(code))

    print(f"import wall time, {args.runs} fresh subprocesses each ({sys.executable})")
    print(f"{'variant':<46} {'median s':>9} {'min s':>7}")
    for name, values in times.items():
        print(f"{name:<46} {statistics.median(values):>9.3f} {min(values):>7.3f}")
    floor, lazy, eager = (statistics.median(times[name]) for name in list(VARIANTS)[1:])
    print(f"eager / lazy (medians): {eager / lazy:.2f}x; lazy saves {eager - lazy:.3f} s per process")
    print(f"lazy - floor (what tfpo_hf adds on top of torch + transformers' LogitsProcessor): {lazy - floor:.3f} s")


if __name__ == "__main__":
    main()
