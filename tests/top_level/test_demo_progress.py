"""`RunProgress`: a demo run's finished steps on disk, reused by a resumed run with the same settings only."""

import json

import pytest
from datasets import Dataset

from tfpo_hf.demo.progress import RunProgress


SETTINGS = {"output_dir": "a", "resume": False, "seed": 0, "seeds": [0, 1]}


def test_steps_are_computed_once_and_read_back(tmp_path):
    calls = []

    def pairs():
        calls.append("pairs")
        return Dataset.from_dict({"prompt": ["x", "y"]}), {"pairs": 2}

    progress = RunProgress(tmp_path, SETTINGS)
    assert progress.json("choice", lambda: {"beta": 2.0}) == {"beta": 2.0}
    dataset, stats = progress.dataset("pairs", pairs)
    resumed = RunProgress(tmp_path, {**SETTINGS, "output_dir": "elsewhere", "resume": True})
    assert resumed.json("choice", lambda: pytest.fail("recomputed")) == {"beta": 2.0}
    again, again_stats = resumed.dataset("pairs", pairs)
    assert calls == ["pairs"] and again["prompt"] == dataset["prompt"] == ["x", "y"] and again_stats == stats
    assert not list(tmp_path.glob("*.tmp")), "no staging file is left behind"


def test_other_settings_are_refused_and_resume_false_starts_over(tmp_path):
    RunProgress(tmp_path, SETTINGS).record("timings", {"pairs": 1.0})
    with pytest.raises(ValueError, match=r"other settings \(seeds differ\).*--resume false"):
        RunProgress(tmp_path, {**SETTINGS, "seeds": [0]}, resume=True)
    fresh = RunProgress(tmp_path, {**SETTINGS, "seeds": [0]}, resume=False)
    assert fresh.recorded("timings") is None
    assert json.loads((tmp_path / "settings.json").read_text())["seeds"] == [0]


def test_a_resumed_step_keeps_its_time_and_is_listed_once(tmp_path):
    from tfpo_hf.demo.context import DemoContext

    def context(resume):
        progress = RunProgress(tmp_path, {**SETTINGS, "resume": resume}, resume=resume)
        run = DemoContext(args=None, patient=None, tokenizer=None, judge=None, output_dir=tmp_path, progress=progress)
        run.resume_records()
        return run

    first = context(resume=False)
    with first.timed("beta choice"):
        pass
    first.timings["beta choice"] = 1466.0  # as if the step had taken that long
    first.progress.record("timings", first.timings)
    resumed = context(resume=True)
    with resumed.timed("beta choice"):  # the resumed run reads the step's results back, quickly
        pass
    with resumed.timed("evaluation"):
        pass
    assert resumed.progress.recorded("finished") == ["beta choice", "evaluation"]
    assert resumed.progress.recorded("timings")["beta choice"] == 1466.0
