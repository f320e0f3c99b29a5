"""The documentation site builds with `mkdocs build --strict`: every page is in the nav and no link is broken."""

import shutil
import sys

import pytest

from ..helpers import REPO_ROOT
from ..helpers.subprocesses import run_checked


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    run_checked(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(REPO_ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=REPO_ROOT,
        timeout=120,
    )
    for page in (
        "index.html",
        "api/index.html",
        "guides/troubleshooting/index.html",
        "guides/hub_datasets/index.html",
    ):
        assert (site / page).is_file(), page
    shutil.rmtree(site, ignore_errors=True)
