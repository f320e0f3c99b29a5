"""The code task: its generated problems checked against solutions written here from each problem's wording, the
`PythonTestsJudge` on right, wrong and hostile completions, judges that take the prompt through the harness and the
beta choice, and the demo's `--task code` options."""

import re
from types import SimpleNamespace

import pytest

from tfpo_hf.demo.arguments import DemoArguments
from tfpo_hf.demo.code_problems import NUM_PROBLEMS, code_problems
from tfpo_hf.demo.pairs import build_preference_pairs
from tfpo_hf.demo.prompts import split_prompts, user_turn
from tfpo_hf.demo.tasks import CODE, MOVIE_REVIEW
from tfpo_hf.evaluation import Method, best_of_n_generate_fn, evaluate_methods
from tfpo_hf.evaluation.code_judge import PythonTestsJudge, extract_code
from tfpo_hf.evaluation.judges import judge_scores, takes_prompt
from tfpo_hf.guidance.beta_choice import BetaChoice
from tfpo_hf.testing import tiny_causal_lm, tiny_tokenizer


PROBLEMS = code_problems()
JUDGE = PythonTestsJudge(PROBLEMS)


def fenced(code: str) -> str:
    return f"Here it is:\n```python\n{code}\n```\nIt works."


# Solutions written from the problem's wording alone (not from the generator's references).
def solve_clamp(description):
    low, high = map(int, re.search(r"range from (-?\d+) to (-?\d+)", description).groups())
    return f"def clamp(n):\n    if n < {low}:\n        return {low}\n    if n > {high}:\n        return {high}\n    return n"


def solve_shift_letters(description):
    shift = int(re.search(r"moved (\d+) places", description).group(1))
    return (
        "def shift_letters(text):\n    out = ''\n    for c in text:\n"
        f"        out += chr((ord(c) - ord('a') + {shift}) % 26 + ord('a')) if c.islower() and c.isascii() else c\n"
        "    return out"
    )


def solve_sum_divisible(description):
    k, floor = map(int, re.search(r"divisible by (\d+) and greater than (-?\d+)", description).groups())
    return f"def sum_divisible(values):\n    return sum(v for v in values if v % {k} == 0 and v > {floor})"


def solve_kth_largest(description):
    k = int(re.search(r"the (\d+)-th largest", description).group(1))
    missing = re.search(r"or (None|-?\d+) when", description).group(1)
    return (
        f"def kth_largest(values):\n    distinct = sorted(set(values))\n"
        f"    return distinct[-{k}] if len(distinct) >= {k} else {missing}"
    )


SOLVERS = {
    "clamp": solve_clamp,
    "shift_letters": solve_shift_letters,
    "sum_divisible": solve_sum_divisible,
    "kth_largest": solve_kth_largest,
}


def test_problems_are_distinct_seeded_and_cover_every_family():
    assert len(PROBLEMS) == NUM_PROBLEMS
    assert len({problem.message for problem in PROBLEMS}) == NUM_PROBLEMS
    assert code_problems() == PROBLEMS
    assert code_problems(seed=1) != PROBLEMS
    assert len({problem.function for problem in PROBLEMS}) == 16
    assert all(len(problem.cases) == 10 for problem in PROBLEMS)


@pytest.mark.parametrize("function", sorted(SOLVERS))
def test_solutions_written_from_the_wording_pass_every_case(function):
    problems = [problem for problem in PROBLEMS if problem.function == function]
    assert problems
    for problem in problems:
        assert JUDGE(fenced(SOLVERS[function](problem.description)), prompt=user_turn(problem.message)) == 1.0


def test_the_edge_cases_catch_careless_solutions():
    clamp = next(problem for problem in PROBLEMS if problem.function == "clamp")
    high = int(re.search(r"to (-?\d+)", clamp.description).group(1))
    only_the_top = fenced(f"def clamp(n):\n    return min(n, {high})")
    assert 0.0 < JUDGE(only_the_top, prompt=clamp.message) < 1.0
    kth = next(problem for problem in PROBLEMS if problem.function == "kth_largest")
    k = int(re.search(r"the (\d+)-th", kth.description).group(1))
    with_duplicates = fenced(
        f"def kth_largest(values):\n    return sorted(values)[-{k}] if len(values) >= {k} else None"
    )
    assert JUDGE(with_duplicates, prompt=kth.message) < 1.0


@pytest.mark.parametrize(
    "completion",
    [
        "I cannot write that function.",
        "```python\ndef clamp(n)\n    return n\n```",  # syntax error
        "```python\ndef clip(n):\n    return n\n```",  # another name
        "```python\ndef clamp(n):\n    raise RuntimeError('no')\n```",
        "```python\nimport sys\nsys.exit(0)\n```",
        "```python\nimport os\nos._exit(0)\n```",
        "```python\ndef clamp(n):\n    print(n)\n```",  # prints instead of returning
    ],
)
def test_completions_without_a_working_function_score_zero(completion):
    clamp = next(problem for problem in PROBLEMS if problem.function == "clamp")
    assert JUDGE(completion, prompt=clamp.message) == 0.0


def test_a_function_that_never_returns_scores_zero_within_the_time_limit():
    clamp = next(problem for problem in PROBLEMS if problem.function == "clamp")
    judge = PythonTestsJudge(PROBLEMS, timeout=1.0)
    assert judge("```python\ndef clamp(n):\n    while True:\n        pass\n```", prompt=clamp.message) == 0.0


def test_printing_and_unclosed_fences_do_not_hide_a_right_function():
    clamp = next(problem for problem in PROBLEMS if problem.function == "clamp")
    solution = solve_clamp(clamp.description).replace("    return n", "    print('value', n)\n    return n")
    assert JUDGE("```python\n" + solution, prompt=clamp.message) == 1.0  # cut off before the closing fence
    assert JUDGE(solution, prompt=clamp.message) == 1.0  # no fence at all


def test_extract_code_takes_the_first_fenced_block():
    assert extract_code("a\n```py\nx = 1\n```\n```python\ny = 2\n```") == "x = 1\n"
    assert extract_code("```\nz = 3\n```") == "z = 3\n"
    assert extract_code("plain = 1") == "plain = 1"


def test_a_prompt_the_judge_does_not_know_is_named():
    with pytest.raises(KeyError, match="no problem asked by this prompt"):
        JUDGE("def f(): pass", prompt="Write a poem.")


# ---------------------------------------------------------------- judges that take the prompt, through the harness
def echo_judge(text, prompt):
    """1 when the text answers its own prompt (it repeats the prompt's last word), else 0."""
    return float(text == prompt[-1]["content"].split()[-1])


def test_judge_scores_hands_each_text_its_prompt():
    prompts = [user_turn("say red"), user_turn("say blue")]
    assert takes_prompt(echo_judge) and not takes_prompt(len) and takes_prompt(JUDGE)
    assert judge_scores(echo_judge, ["red", "red"], prompts) == [1.0, 0.0]
    assert judge_scores(len, ["ab", "c"], prompts) == [2.0, 1.0]
    with pytest.raises(ValueError, match="2 texts for 1 prompts"):
        judge_scores(echo_judge, ["red", "blue"], prompts[:1])


def test_evaluate_methods_and_best_of_n_judge_each_sample_against_its_prompt():
    prompts = [user_turn("say red"), user_turn("say blue"), user_turn("say green")]
    words = ["red", "blue", "green"]
    right = Method("right", lambda ps, seed: [p[-1]["content"].split()[-1] for p in ps])
    # seed s answers prompt i with the word of prompt (i + s) % 3: right once every three seeds
    shifted = Method("shifted", lambda ps, seed: [words[(i + seed) % 3] for i in range(len(ps))])
    results = evaluate_methods([shifted, right], prompts, echo_judge, "shifted", seeds=[0, 1])
    assert results[0].scores == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert results[1].scores == [1.0] * 6 and results[1].win_rate == pytest.approx(0.75)
    best = best_of_n_generate_fn(shifted.generate, echo_judge, n=3)
    assert best(prompts, 1) == words  # seeds 1, 2, 3: seed 3 answers every prompt rightly


def test_the_beta_choice_needs_the_prompts_of_a_judge_that_takes_them():
    prompts = [user_turn("say red"), user_turn("say blue")]
    unguided, guided = ["red", "x"], {1.0: ["red", "blue"], 2.0: ["x", "x"]}
    with pytest.raises(ValueError, match="give the `prompts`"):
        BetaChoice.from_texts(unguided, guided, echo_judge)
    choice = BetaChoice.from_texts(unguided, guided, echo_judge, min_distinct_ratio=0.1, prompts=prompts)
    assert choice.beta == 1.0 and choice.unguided_mean_score == 0.5
    assert [row.mean_score for row in choice.rows] == [1.0, 0.0]


# ---------------------------------------------------------------- the demo's --task code
def test_the_code_task_sets_its_judge_length_faces_and_prompts():
    args = DemoArguments(task="code")
    assert (args.judge, args.max_new_tokens) == ("python_tests", 96)
    assert (DemoArguments(task="code", quick=True).max_new_tokens, DemoArguments().max_new_tokens) == (40, 32)
    assert DemoArguments(task="code", judge="vader", max_new_tokens=50).judge == "vader"
    assert CODE.positive_face != MOVIE_REVIEW.positive_face
    pairs, validation, evaluation = split_prompts(args)
    messages = [prompt[0]["content"] for prompt in pairs + validation + evaluation]
    assert len(set(messages)) == len(messages) == 96 + 64
    assert all(JUDGE.problems.get(message) is not None for message in messages)
    with pytest.raises(ValueError, match="Unknown task 'poetry'"):
        DemoArguments(task="poetry")


def test_no_preference_pairs_is_a_clear_error():
    """A judge that scores every sample alike leaves no pair: the error says what to change."""
    args = DemoArguments(task="code", quick=True, max_new_tokens=3)
    context = SimpleNamespace(
        args=args, judge=lambda text: 0.0, patient=tiny_causal_lm(seed=0), tokenizer=tiny_tokenizer()
    )
    with pytest.raises(ValueError, match="No preference pairs.*--samples_per_prompt"):
        build_preference_pairs(context, split_prompts(args)[0][:3])
