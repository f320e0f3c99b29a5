"""`PythonTestsJudge`: scores a completion by running the Python function it writes against hidden test cases.

The score of a completion is the fraction of its problem's test cases that the function passes (0 when the code does
not compile, does not define the function, raises, loops past the time limit or prints instead of returning). It is
not gamed by construction: the cases are inputs the prompt does not show, compared with a reference implementation's
outputs, so no wording, length or style of the answer earns anything; only a function that computes the right values
does. Each completion runs in its own isolated Python process (`python -I`) with a time limit and, on POSIX, memory
and CPU limits: run it only on completions of models you are evaluating, not on untrusted input.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable
from typing import Any, Protocol


FENCED_CODE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
MEMORY_LIMIT_BYTES = 1 << 30
RUNNER = r"""
import contextlib, io, json, sys
request = json.loads(sys.stdin.read())
cases, function_name = request.pop("cases"), request.pop("function")
sink, passed, function = io.StringIO(), 0, None
try:
    namespace = {"__name__": "solution"}
    with contextlib.redirect_stdout(sink):
        exec(compile(request.pop("code"), "<completion>", "exec"), namespace)
    function = namespace.get(function_name)
except BaseException:
    pass
for arguments, expected in cases if callable(function) else []:
    try:
        with contextlib.redirect_stdout(sink):
            passed += bool(function(*arguments) == expected)
    except BaseException:
        pass
sys.__stdout__.write("\n" + json.dumps(passed))
"""


class Problem(Protocol):
    """What the judge needs of a problem: the user `message` that asks for it, the `function` name and the `cases`,
    `(arguments, expected)` pairs (JSON values: tuples compare as lists)."""

    message: str
    function: str
    cases: Any


def extract_code(text: str) -> str:
    """The code of a completion: its first fenced block (```python ... ```, an unclosed one running to the end), or
    the whole text when it has none."""
    match = FENCED_CODE.search(text)
    return match.group(1) if match else text


def user_message(prompt: str | list[dict[str, Any]]) -> str:
    """The last user message of a chat prompt (a string prompt is one)."""
    if isinstance(prompt, str):
        return prompt
    return next(message["content"] for message in reversed(prompt) if message["role"] == "user")


class PythonTestsJudge:
    """The fraction of a problem's hidden test cases passed by the function a completion writes, in [0, 1].

    A judge that takes the prompt: `judge(completion, prompt=chat)` finds the problem by the prompt's last user
    message (`Problem.message`).

    Args:
        problems: the problems it can judge.
        timeout: seconds one completion may run (all its cases together) before it scores 0.
    """

    name = "python_tests"

    def __init__(self, problems: Iterable[Problem], timeout: float = 5.0):
        self.problems = {problem.message: problem for problem in problems}
        self.timeout = timeout

    def __call__(self, text: str, prompt: str | list[dict[str, Any]]) -> float:
        message = user_message(prompt)
        if message not in self.problems:
            raise KeyError(
                f"The python_tests judge has no problem asked by this prompt ({message[:80]!r}...): give it the "
                "problems the prompts come from."
            )
        problem = self.problems[message]
        request = {"code": extract_code(text), "function": problem.function, "cases": problem.cases}
        return run_cases(request, self.timeout) / len(problem.cases)


def run_cases(request: dict[str, Any], timeout: float) -> int:
    """How many of `request["cases"]` the `request["function"]` defined by `request["code"]` passes, run in a fresh
    isolated interpreter; 0 when it times out or dies."""
    try:
        finished = subprocess.run(
            [sys.executable, "-I", "-c", RUNNER],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=limit_resources if sys.platform != "win32" else None,
        )
    except subprocess.TimeoutExpired:
        return 0
    last_line = finished.stdout.rstrip().rpartition("\n")[2]
    return int(last_line) if finished.returncode == 0 and last_line.isdigit() else 0


def limit_resources() -> None:
    """Cap the judged process's memory and CPU seconds (POSIX; called in the child before it runs)."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (10, 10))
