"""`choose_beta` and `BetaChoice`: the rule (largest admissible beta, or the judge's favourite among them, ties to the
smaller; the smallest candidate with a warning when none is admissible), on crafted texts and on tiny models whose
guided text degenerates at large beta; the record in `doctor_config.json`, read back by the processor and
`GuidedModel` as their default beta; bad input."""

import ast
import json
import math
import warnings

import pytest
import torch
from transformers import LogitsProcessorList

from tfpo_hf import BetaChoice, DoctorConfig, DoctorLogitsProcessor, DoctorModel, GuidedModel, choose_beta
from tfpo_hf.evaluation.harness import patient_generate_fn
from tfpo_hf.evaluation.metrics import distinct_n
from tfpo_hf.guidance.beta_choice import check_betas
from tfpo_hf.testing import tiny_causal_lm, tiny_lora_doctor
from tfpo_hf.utils.constants import DOCTOR_CONFIG_NAME

from ..helpers import REPO_ROOT


PROMPTS = ["Tell me about cats.", "Hi!", "Describe a sunrise.", "What is rain?"]
NEW_TOKENS = 24
LETTERS = "abcdefgh"
SPACE = "Ġ"  # the byte-level token of " "


# ---------------------------------------------------------------------------------------------- models
def constant_lm(tokenizer, logits: dict[str, float], seed: int = 0):
    """A tiny Llama whose next-token logits are `logits` (token -> logit, 0 elsewhere) whatever the context: a huge
    constant bias in the last MLP dominates the residual stream, so the final norm gives one fixed direction."""
    model = tiny_causal_lm(seed=seed, mlp_bias=True, logit_scale=1.0)
    with torch.no_grad():
        bias = model.model.layers[-1].mlp.down_proj.bias
        bias.zero_()
        bias[0] = 1e4
        model.lm_head.weight.zero_()
        for token, value in logits.items():
            model.lm_head.weight[tokenizer.convert_tokens_to_ids(token), 0] = value / model.config.hidden_size**0.5
    return model


@pytest.fixture(scope="module")
def words_tokenizer(tokenizer):
    """The tiny tokenizer of conftest (left padding), under the name these tests read it by."""
    return tokenizer


@pytest.fixture(scope="module")
def words_patient(words_tokenizer):
    """Samples random words of the letters a-h (every other token is ruled out): a high distinct-2."""
    return constant_lm(words_tokenizer, {**dict.fromkeys(LETTERS, 20.0), SPACE: 21.0})


@pytest.fixture(scope="module")
def a_doctor(words_tokenizer):
    """Prefers "a" and " " by one logit (the mix): strong guidance leaves "a aa a ...", a collapsed distinct-2."""
    return constant_lm(words_tokenizer, {"a": 1.0, SPACE: 1.0}, seed=1)


def a_fraction(text: str) -> float:
    letters = text.replace(" ", "")
    return letters.count("a") / len(letters) if letters else 0.0


# ---------------------------------------------------------------------------------------------- the rule, on texts
UNGUIDED = ["one two three four", "five six seven eight"]  # distinct-2: 6 / 6
VARIED = ["a b c d", "e f g h"]  # 6 / 6
ALSO_VARIED = ["b c d e", "f g h i"]  # 6 / 6
COLLAPSED = ["x x x x", "x x x x"]  # 1 / 6


def test_without_a_judge_the_largest_admissible_beta_wins_not_the_largest():
    choice = BetaChoice.from_texts(UNGUIDED, {4.0: COLLAPSED, 1.0: VARIED, 2.0: ALSO_VARIED})
    assert choice.beta == 2.0
    assert choice.candidates == [1.0, 2.0, 4.0]  # sorted
    assert [row.admissible for row in choice.rows] == [True, True, False]
    assert choice.unguided_distinct_2 == 1.0 and choice.rows[2].distinct_2 == pytest.approx(1 / 6)
    assert choice.rule.startswith("largest beta") and "0.9" in choice.rule
    assert all(row.mean_score is None for row in choice.rows) and choice.judge is None


def test_with_a_judge_the_best_admissible_mean_score_wins_ties_to_the_smaller_beta():
    scores = {"a b c d": 1.0, "e f g h": 0.0, "b c d e": 0.0, "f g h i": 1.0, "x x x x": 10.0}

    def judge(text):
        return scores.get(text, 0.0)

    # 1 and 2 tie at 0.5; 4 scores best but is not admissible
    choice = BetaChoice.from_texts(UNGUIDED, {1.0: VARIED, 2.0: ALSO_VARIED, 4.0: COLLAPSED}, judge=judge)
    assert choice.beta == 1.0
    assert [row.mean_score for row in choice.rows] == [0.5, 0.5, 10.0]
    assert choice.judge == "judge" and choice.rule.startswith("highest mean judge score")
    # without the tie, the better one wins even when it is not the largest
    scores["b c d e"] = -1.0
    assert BetaChoice.from_texts(UNGUIDED, {1.0: VARIED, 2.0: ALSO_VARIED}, judge=judge).beta == 1.0
    scores["b c d e"], scores["a b c d"] = 1.0, -1.0
    assert BetaChoice.from_texts(UNGUIDED, {1.0: VARIED, 2.0: ALSO_VARIED}, judge=judge).beta == 2.0


def test_the_ratio_is_the_threshold():
    half = ["x y x y", "x y x y"]  # distinct-2: 2 / 6
    assert BetaChoice.from_texts(UNGUIDED, {1.0: VARIED, 2.0: half}, min_distinct_ratio=0.3).beta == 2.0
    assert BetaChoice.from_texts(UNGUIDED, {1.0: VARIED, 2.0: half}, min_distinct_ratio=0.4).beta == 1.0


def test_no_admissible_beta_gives_the_smallest_candidate_with_a_warning():
    with pytest.warns(UserWarning, match="No candidate beta kept distinct-2 .* smallest candidate, 2"):
        choice = BetaChoice.from_texts(UNGUIDED, {8.0: COLLAPSED, 2.0: COLLAPSED}, judge=lambda text: 1.0)
    assert choice.beta == 2.0 and choice.rule.startswith("no beta kept distinct-2")


def test_a_doctor_that_scores_below_the_unguided_patient_at_every_beta_is_warned_about():
    """The rule still picks the best admissible beta, but says the doctor does not steer toward the judge (what the
    weak-to-strong run's first doctor did: docs/results.md)."""
    scores = {"one two three four": 1.0, "five six seven eight": 1.0, "a b c d": 0.5, "b c d e": 0.2}
    with pytest.warns(UserWarning, match=r"No candidate beta scored above the unguided patient .*beta 1, 0\.250"):
        choice = BetaChoice.from_texts(UNGUIDED, {1.0: VARIED, 2.0: ALSO_VARIED}, judge=lambda t: scores.get(t, 0.0))
    assert choice.beta == 1.0 and choice.unguided_mean_score == 1.0


def test_an_admissible_choice_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BetaChoice.from_texts(UNGUIDED, {1.0: VARIED})


# ---------------------------------------------------------------------------------------------- on tiny models
def test_choose_beta_stops_before_the_guided_text_degenerates(words_patient, words_tokenizer, a_doctor):
    choice = choose_beta(
        words_patient, words_tokenizer, a_doctor, PROMPTS, min_distinct_ratio=0.8, max_new_tokens=NEW_TOKENS
    )
    by_beta = {row.beta: row for row in choice.rows}
    assert choice.candidates == [0.5, 1.0, 2.0, 4.0, 8.0]
    # the doctor's pull shows: more "a"s and a lower distinct-2 as beta grows, until it collapses
    assert by_beta[8.0].distinct_2 < 0.5 * choice.unguided_distinct_2 < by_beta[0.5].distinct_2
    assert a_fraction(" ".join(by_beta[8.0].texts)) > 0.8 > a_fraction(" ".join(by_beta[0.5].texts))
    admissible = [row.beta for row in choice.rows if row.admissible]
    assert admissible == [0.5, 1.0, 2.0]
    assert choice.beta == 2.0
    assert choice.settings == {
        "seed": 0,
        "num_prompts": 4,
        "generation": {"do_sample": True, "max_new_tokens": NEW_TOKENS},
        "alpha": 1.0,
        "reference": None,
    }
    # the measured texts are what decoding at that beta gives: one processor reused across betas leaks no state
    fresh = patient_generate_fn(
        words_patient,
        words_tokenizer,
        processor_factory=lambda: DoctorLogitsProcessor(a_doctor, betas=1.0, tokenizer=words_tokenizer),
        do_sample=True,
        max_new_tokens=NEW_TOKENS,
    )
    assert fresh(PROMPTS, 0) == by_beta[1.0].texts
    assert distinct_n(choice.unguided_texts, 2) == choice.unguided_distinct_2


def test_choose_beta_with_a_judge(words_patient, words_tokenizer, a_doctor):
    # the judge likes "a"s, most of all at beta 8, which is not admissible
    choice = choose_beta(
        words_patient,
        words_tokenizer,
        a_doctor,
        PROMPTS,
        betas=(2.0, 0.5, 8.0, 2.0),
        judge=a_fraction,
        min_distinct_ratio=0.8,
        max_new_tokens=NEW_TOKENS,
    )
    assert choice.candidates == [0.5, 2.0, 8.0]  # duplicates measured once
    assert choice.rows[2].mean_score > choice.rows[1].mean_score > choice.rows[0].mean_score
    assert choice.beta == 2.0 and choice.judge == "a_fraction"
    # a judge that cannot tell them apart: the smaller admissible beta
    flat = choose_beta(
        words_patient,
        words_tokenizer,
        a_doctor,
        PROMPTS[:2],
        betas=(0.5, 2.0),
        judge=lambda text: 0.0,
        max_new_tokens=8,
    )
    assert flat.unguided_distinct_2 > 0 and all(row.admissible for row in flat.rows)
    assert flat.beta == 0.5


def test_choose_beta_warns_when_every_candidate_degenerates(words_patient, words_tokenizer, a_doctor):
    with pytest.warns(UserWarning, match="smallest candidate, 4"):
        choice = choose_beta(
            words_patient,
            words_tokenizer,
            a_doctor,
            PROMPTS,
            betas=(8.0, 4.0),
            min_distinct_ratio=0.8,
            max_new_tokens=NEW_TOKENS,
        )
    assert choice.beta == 4.0 and not any(row.admissible for row in choice.rows)


# ---------------------------------------------------------------------------------------------- the record
def a_choice(beta=2.0) -> BetaChoice:
    return BetaChoice.from_texts(
        UNGUIDED, {beta: VARIED, 2 * beta: COLLAPSED}, settings={"seed": 3, "generation": {"top_p": 0.9}}
    )


def test_apply_to_sets_beta_and_records_how(tmp_path):
    config = DoctorConfig(guidance="mix", beta=0.5, extra={"future_key": [1, 2]})
    choice = a_choice(3.0)
    assert choice.apply_to(config) is config
    assert config.beta == 3.0 and config.decoding_beta == 3.0
    record = config.to_dict()["beta_choice"]
    assert record["candidates"] == [3.0, 6.0] and record["rule"] == choice.rule
    assert record["table"][1] == {
        "beta": 6.0,
        "distinct_2": pytest.approx(1 / 6),
        "mean_score": None,
        "admissible": False,
    }
    assert "texts" not in json.dumps(record)
    config.save_pretrained(tmp_path)
    loaded = DoctorConfig.from_pretrained(tmp_path)
    assert loaded == config and loaded.extra == {"future_key": [1, 2]}
    assert BetaChoice.from_dict(loaded.beta_choice) == choice
    assert "beta_choice" not in DoctorConfig(beta=1.0).to_dict()  # left None: omitted, as every field


def test_apply_to_folder_then_the_processor_decodes_with_it_by_default(tmp_path, words_tokenizer, words_patient):
    folder = tmp_path / "doctor"
    doctor = tiny_causal_lm(seed=1)
    doctor.save_pretrained(folder)
    DoctorConfig(guidance="mix", theta=0.5, beta=0.5, extra={"future_key": 1}).save_pretrained(folder)
    choice = a_choice(3.0)
    updated = choice.apply_to_folder(folder)
    assert updated.beta == 3.0
    loaded = DoctorConfig.from_pretrained(folder)
    assert loaded == updated
    assert (loaded.theta, loaded.guidance, loaded.extra) == (0.5, "mix", {"future_key": 1})  # the rest is kept
    assert BetaChoice.from_dict(loaded.beta_choice) == choice
    assert sorted(path.name for path in tmp_path.iterdir()) == ["doctor"]  # no staging folder left behind

    processor = DoctorLogitsProcessor(str(folder), tokenizer=words_tokenizer)
    assert processor.betas == [3.0]
    inputs = words_tokenizer(["Hi!", "Tell me about cats."], padding=True, return_tensors="pt")
    explicit = DoctorLogitsProcessor(doctor, betas=3.0, tokenizer=words_tokenizer)
    outputs = []
    for guide in (processor, explicit):
        guide.set_attention_mask(inputs.attention_mask)
        out = words_patient.generate(
            **inputs,
            logits_processor=LogitsProcessorList([guide]),
            max_new_tokens=4,
            do_sample=False,
            pad_token_id=words_tokenizer.pad_token_id,
            output_scores=True,
            return_dict_in_generate=True,
        )
        outputs.append(torch.stack(out.scores))
    torch.testing.assert_close(outputs[0], outputs[1])


def test_apply_to_folder_of_a_legacy_doctor_writes_the_new_file(tmp_path):
    (tmp_path / "tfpo_config.json").write_text(json.dumps({"beta": 1.0, "reference_name_or_path": "base"}))
    a_choice(4.0).apply_to_folder(tmp_path)
    loaded = DoctorConfig.from_pretrained(tmp_path)
    assert (loaded.beta, loaded.initial_name_or_path) == (4.0, "base")
    assert (tmp_path / DOCTOR_CONFIG_NAME).is_file()


def test_apply_to_folder_refuses_what_is_not_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        a_choice().apply_to_folder(tmp_path / "missing")


def test_a_doctor_model_carrying_the_choice_guides_at_it_by_default():
    doctor = DoctorModel(tiny_causal_lm(seed=1))
    a_choice(4.0).apply_to(doctor.doctor_config)
    assert DoctorLogitsProcessor(doctor).betas == [4.0]
    patient = tiny_causal_lm(seed=0)
    lora_doctor = DoctorModel(tiny_lora_doctor(patient, seed=1))
    a_choice(2.5).apply_to(lora_doctor.doctor_config)
    assert GuidedModel(patient, lora_doctor).betas == [2.5]


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompts": []}, "`prompts` is empty"),
        ({"prompts": "Hi!"}, "`prompts` must be a list"),
        ({"betas": []}, "`betas` is empty"),
        ({"betas": 2.0}, "`betas` must be a list"),
        ({"betas": [1.0, math.nan]}, r"betas\[1\] must be a finite"),
        ({"betas": [math.inf]}, r"betas\[0\] must be a finite"),
        ({"betas": [-1.0, 1.0]}, "`betas` must be non-negative"),
        ({"min_distinct_ratio": 0.0}, r"min_distinct_ratio must be in \(0, 1\]"),
        ({"min_distinct_ratio": 1.5}, r"min_distinct_ratio must be in \(0, 1\]"),
        ({"min_distinct_ratio": math.nan}, "min_distinct_ratio must be a finite"),
        ({"doctor": []}, "`doctor` must be one doctor"),
    ],
)
def test_choose_beta_bad_input_names_the_argument(kwargs, message, words_patient, words_tokenizer, a_doctor):
    arguments = {"prompts": PROMPTS, "doctor": a_doctor, **kwargs}
    with pytest.raises(ValueError, match=message):
        choose_beta(words_patient, words_tokenizer, **arguments)


def test_from_texts_bad_input():
    with pytest.raises(ValueError, match="`unguided_texts` is empty"):
        BetaChoice.from_texts([], {1.0: []})
    with pytest.raises(ValueError, match="`guided_texts` is empty"):
        BetaChoice.from_texts(UNGUIDED, {})
    with pytest.raises(ValueError, match=r"`guided_texts\[2\]` holds 1 texts for 2"):
        BetaChoice.from_texts(UNGUIDED, {2.0: ["a b"]})
    with pytest.raises(ValueError, match=r"betas\[0\] must be a finite"):
        BetaChoice.from_texts(UNGUIDED, {math.nan: VARIED})
    with pytest.raises(ValueError, match="judge.*not finite"):
        BetaChoice.from_texts(UNGUIDED, {1.0: VARIED}, judge=lambda text: math.nan)


def test_check_betas_sorts_and_drops_duplicates():
    assert check_betas((4, 0.5, 4.0, 0)) == [0.0, 0.5, 4.0]


def test_evaluation_does_not_import_guidance():
    """guidance.beta_choice builds on evaluation; evaluation must not import guidance back (a cycle)."""
    for path in (REPO_ROOT / "src" / "tfpo_hf" / "evaluation").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert "guidance" not in module, f"{path.name} imports {module}"
            elif isinstance(node, ast.Import):
                assert not any("tfpo_hf.guidance" in alias.name for alias in node.names), path.name
