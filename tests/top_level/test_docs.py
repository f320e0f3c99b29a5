"""docs/api.md stays in step with the code: every documented name imports."""

import importlib
import re

import pytest

from ..helpers import REPO_ROOT


API = (REPO_ROOT / "docs" / "api.md").read_text()


def documented_names() -> list[str]:
    """Backticked names that start a bullet: `Name(`, `tfpo_hf.module.name(`, or a bare `Name`."""
    return sorted(set(re.findall(r"^- `((?:tfpo_hf\.[\w.]+)|[A-Z]\w+|load_default_patient)[`(]", API, flags=re.M)))


@pytest.mark.parametrize("name", documented_names())
def test_documented_name_imports(name):
    if name.startswith("tfpo_hf."):
        module_name, attribute = name.rsplit(".", 1)
        module = importlib.import_module(module_name)
        if not hasattr(module, attribute):
            importlib.import_module(name)  # a documented submodule
    else:
        module, attribute = importlib.import_module("tfpo_hf"), name
    assert hasattr(module, attribute), f"docs/api.md documents {name}, which does not exist"


def test_the_promised_public_names_are_documented():
    import tfpo_hf

    for name in tfpo_hf.__all__:
        assert name in API, f"{name} is public but missing from docs/api.md"


@pytest.mark.slow
def test_quickstart_in_docs_index_runs(tmp_path, monkeypatch, capsys):
    """The 30-line quickstart of docs/index.md, as written, on the embedded SmolLM2 patient."""
    index = (REPO_ROOT / "docs" / "index.md").read_text()
    code = re.search(r"```python\n(.*?)```", index, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/index.md", "exec"), {})
    assert (tmp_path / "my-doctor" / "value_head.safetensors").exists()
    assert capsys.readouterr().out.strip(), "the quickstart prints the guided text"
