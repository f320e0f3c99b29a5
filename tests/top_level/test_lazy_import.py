"""`import tfpo_hf` is lazy (PEP 562): decoding with `DoctorLogitsProcessor` does not pay for the training stack
(trl, datasets) nor for the demo's extras (matplotlib, vaderSentiment, sacrebleu, tfpo_hf.evaluation).

Each check runs in a fresh interpreter, since this test process has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest


# Modules a decoding-only user must not import. Checked as top-level packages and as any of their submodules.
HEAVY_MODULES = ("trl", "datasets", "matplotlib", "vaderSentiment", "sacrebleu", "tfpo_hf.evaluation")
# What `import tfpo_hf` itself loads: the helper behind its lazy exports, nothing of any stage.
BARE_IMPORT_MODULES = ["tfpo_hf.utils", "tfpo_hf.utils.lazy_exports"]
# The names `from tfpo_hf import *` exports: a test that can fail when a name is added or dropped by mistake.
EXPORTS = {
    "BetaChoice",
    "DoctorConfig",
    "DoctorLogitsProcessor",
    "DoctorModel",
    "GuidedModel",
    "TFPOConfig",
    "TFPOTrainer",
    "TokenRewardCollator",
    "TokenRewardConfig",
    "TokenRewardScorer",
    "TokenRewards",
    "choose_beta",
    "load_default_patient",
}


def run_fresh(code: str) -> dict:
    """Run `code` in a new interpreter; it prints one JSON object as its last line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def loaded(modules: list[str]) -> list[str]:
    return sorted(
        {name for name in modules for heavy in HEAVY_MODULES if name == heavy or name.startswith(heavy + ".")}
    )


def test_bare_import_loads_no_submodule():
    state = run_fresh(
        """
        import json, sys
        import tfpo_hf
        print(json.dumps({"modules": sorted(sys.modules), "version": tfpo_hf.__version__}))
        """
    )
    assert [name for name in state["modules"] if name.startswith("tfpo_hf.")] == BARE_IMPORT_MODULES
    assert "torch" not in state["modules"] and "transformers" not in state["modules"]
    assert state["version"] not in ("", None)


@pytest.mark.parametrize("name", ["DoctorLogitsProcessor", "DoctorModel", "TokenRewardConfig"])
def test_decoding_names_do_not_import_training_or_demo_stack(name):
    state = run_fresh(
        f"""
        import json, sys
        import tfpo_hf
        tfpo_hf.{name}
        print(json.dumps({{"modules": sorted(sys.modules)}}))
        """
    )
    assert loaded(state["modules"]) == []


def test_trainer_still_imports_on_access():
    state = run_fresh(
        """
        import json, sys
        import tfpo_hf
        trainer = tfpo_hf.TFPOTrainer
        print(json.dumps({"module": trainer.__module__, "datasets_loaded": "datasets" in sys.modules}))
        """
    )
    assert state == {"module": "tfpo_hf.training.trainer", "datasets_loaded": True}


def test_every_export_resolves_and_is_listed():
    state = run_fresh(
        """
        import json
        import tfpo_hf
        resolved = {name: getattr(tfpo_hf, name).__module__ for name in tfpo_hf.__all__}
        star = {}
        exec("from tfpo_hf import *", star)
        print(json.dumps({"all": tfpo_hf.__all__, "dir": dir(tfpo_hf), "resolved": resolved,
                          "star": sorted(name for name in star if not name.startswith("__"))}))
        """
    )
    assert set(state["all"]) == EXPORTS
    assert EXPORTS <= set(state["dir"])
    assert "__version__" in state["dir"]
    assert state["star"] == sorted(EXPORTS)
    assert all(module.startswith("tfpo_hf.") for module in state["resolved"].values()), state["resolved"]


def test_lazy_table_matches_all():
    import tfpo_hf

    assert set(tfpo_hf._EXPORTS) == set(tfpo_hf.__all__) == EXPORTS


def test_unknown_attribute_raises_attribute_error():
    import tfpo_hf

    with pytest.raises(AttributeError, match="no attribute 'NotAThing'"):
        tfpo_hf.NotAThing  # noqa: B018
    assert not hasattr(tfpo_hf, "NotAThing")
    with pytest.raises(ImportError):
        from tfpo_hf import NotAThing  # noqa: F401


def test_version_matches_installed_metadata():
    from importlib.metadata import version

    import tfpo_hf

    assert tfpo_hf.__version__ == version("tfpo-hf")
