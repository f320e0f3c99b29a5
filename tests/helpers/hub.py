"""The Hub, kept out of tests: a guard that fails a test on any Hub lookup, and a fake repo that only answers which
files it holds."""

from __future__ import annotations


def forbid_hub_calls(monkeypatch) -> None:
    """Fail the test at any Hub lookup by tfpo_hf's loaders or by transformers' file resolution."""

    def hub_call(*args, **kwargs):
        raise AssertionError(f"a Hub lookup was made: {args}")

    for target in (
        "tfpo_hf.utils.hub.cached_file",
        "tfpo_hf.utils.hub.has_file",
        "transformers.utils.hub.hf_hub_download",
    ):
        monkeypatch.setattr(target, hub_call)


def fake_hub_repo(monkeypatch, files: set[str]) -> None:
    """Every Hub repo holds exactly `files`, as `has_file` sees them; nothing can be downloaded."""
    monkeypatch.setattr("tfpo_hf.utils.hub.has_file", lambda repo, name, **kwargs: name in files)
    monkeypatch.setattr("tfpo_hf.utils.hub.cached_file", lambda *args, **kwargs: None)
