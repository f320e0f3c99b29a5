"""Benchmarks that nobody runs rot: every script under `benchmarks/` that has a `--smoke` flag runs here with it (tiny
random models of `tfpo_hf.testing`, minimal sizes, seconds), in a fresh interpreter, and must exit with 0 after
printing its figures. Scripts are found by reading them, so a new script, or a smoke mode added to an old one, is
picked up without editing this file. `make bench` runs the same scripts at their real sizes."""

from __future__ import annotations

import re
import sys
import time

import pytest

from ..helpers import REPO_ROOT
from ..helpers.subprocesses import run_checked


BENCHMARKS = REPO_ROOT / "benchmarks"
# A smoke mode is a `--smoke` flag: argparse's "--smoke", or a `smoke: bool` field of the dataclasses that an
# HfArgumentParser (TrlParser) turns into flags.
SMOKE_FLAG = re.compile(r"""["']--smoke["']|^\s*smoke\s*:\s*bool\b""", re.MULTILINE)
# Scripts that must have one; any other script with the flag runs too.
REQUIRED = (
    "bench_capture.py",
    "bench_cross_tokenizer.py",
    "bench_generate.py",
    "bench_import.py",
    "bench_pair.py",
    "bench_rewards.py",
    "bench_subtb.py",
    "bench_text_probability.py",
    "bench_train.py",
    "bench_vllm.py",
)
# A figure each of them prints (a table row or a result line with its numbers); a script not listed here must print
# at least one line holding a number.
FIGURES = {
    "bench_capture.py": [
        r"^ +tiny +2 +captured tinier LoRA doctor \+ its base +\d+\.\d+ +\d+\.\d+ +\d+\.\d+ +\d+\.\d+$",
        r"^ +tiny +2 +eager same-size LoRA, fused \(GuidedModel\) +\d+\.\d+",
        r"^captured plain / eager plain, tiny batch 2: \d+\.\d+x tokens/s$",
    ],
    "bench_subtb.py": [r"^  closed form: min \d+\.\d+ ms", r"^  speed ratio \(min / min\): [\d,]+x$"],
    "bench_rewards.py": [r"^score_dataset +\d+\.\d+ +\d+\.\d+ +\d+\.\d+", r"^ratio score_dataset / plain forward"],
    "bench_generate.py": [
        r"^guided, doctor same size +\d+ +\d+\.\d+ +\d+\.\d+ +\d+\.\d+ +\d+\.\d+ +\d+\.\d+$",
        r"^ratio, LoRA doctor, reference base +\d+ +\d+\.\d+",
        r"^doctor same size: step cost \d+\.\d+ x patient",
        r"^ +2 +\d+\.\d+ +\d+\.\d+ +\d+\.\d+ .*%",  # the fused-path table's row for batch 2
    ],
    "bench_pair.py": [
        r"^LoRA doctor \+ base rows, one forward +\d+\.\d+ +\d+\.\d+ +\d+\.\d+ +\d+\.\d+ +\d+\.\d+$",
        r"^target: guided <= 1\.50x plain: \d+\.\d+x",
    ],
    "bench_text_probability.py": [
        r"^\d+ contexts; mean exact log p\(next patient token's text\) = -\d+\.\d+ nats$",
        r"^ +exact +0\.00e\+00 +0\.00e\+00 +0\.00e\+00 +\d+\.\d +\d+\.\d+$",
        r"^ +4 +\d\.\d\de-\d\d +\d\.\d\de-\d\d +\d\.\d\de-\d\d +\d+\.\d +\d+\.\d+$",
    ],
    "bench_train.py": [r"^TFPOTrainer +tokens/s: best +\d+", r"^TFPO / DPO throughput ratio: best \d+\.\d+"],
    "bench_import.py": [r"^lazy: +tfpo_hf\.DoctorLogitsProcessor +\d+\.\d+ +\d+\.\d+$", r"^eager / lazy \(medians\)"],
    "bench_vllm.py": [
        r"^vLLM, same size +\d+\.\d+ +\d+\.\d+ +\d+\.\d+x$",
        r"^a third: guided vLLM \d+\.\d+x plain vLLM; target >= 0\.65x: \w+ \(bound .*: \d+\.\d+x\)",
        r"^doctor prefills \(one per request and doctor weighting it\): \d+;",
    ],
}
# A script naming a module it needs (`# benchmark-requires: vllm`) runs where that module is installed (vLLM: in
# `make test-vllm`'s environment) and is skipped elsewhere.
REQUIRES = re.compile(r"^# benchmark-requires: (\w+)$", re.MULTILINE)
TIMEOUT_S = 300  # each script takes seconds to half a minute on 2 busy CPU cores


def smoke_scripts() -> list[str]:
    return sorted(path.name for path in BENCHMARKS.glob("*.py") if SMOKE_FLAG.search(path.read_text()))


def test_the_benchmarks_have_smoke_modes():
    missing = set(REQUIRED) - set(smoke_scripts())
    assert not missing, f"no --smoke flag found in {sorted(missing)}"


@pytest.mark.parametrize("script", smoke_scripts())
def test_smoke_mode_runs_and_prints_its_figures(script):
    for module in REQUIRES.findall((BENCHMARKS / script).read_text()):
        pytest.importorskip(module, reason=f"{script} needs {module} (installed by make test-{module})")
    start = time.perf_counter()
    result = run_checked([sys.executable, str(BENCHMARKS / script), "--smoke"], cwd=REPO_ROOT, timeout=TIMEOUT_S)
    seconds = time.perf_counter() - start
    for figure in FIGURES.get(script, [r"\d"]):
        assert re.search(figure, result.stdout, re.MULTILINE), (
            f"{script} --smoke ({seconds:.1f} s) printed no line matching {figure!r}:\n{result.stdout}"
        )
