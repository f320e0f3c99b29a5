"""The documentation site builds with `mkdocs build --strict`: every page is in the nav and no link is broken."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).parents[1]


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for page in (
        "index.html",
        "api/index.html",
        "guides/troubleshooting/index.html",
        "guides/hub_datasets/index.html",
    ):
        assert (site / page).is_file(), page
    shutil.rmtree(site, ignore_errors=True)
