"""Running code in a fresh interpreter the way the tests need it: offline, single-threaded, with the repository root
on PYTHONPATH (so that `python -m tests.scripts.<name>` and `tests.helpers` import), and a free port for
`accelerate launch`."""

from __future__ import annotations

import os
import socket
import subprocess

from . import REPO_ROOT


def offline_env() -> dict[str, str]:
    """This process's environment, offline and single-threaded, with the repository root first on PYTHONPATH."""
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": python_path,
    }


def free_port() -> int:
    """A TCP port nobody listens on now, for `accelerate launch --main_process_port`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_checked(command: list[str], cwd, timeout: float) -> subprocess.CompletedProcess:
    """Run `command` in `cwd` with `offline_env()`; it must exit with 0 (else the end of its stderr is shown)."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=offline_env(), cwd=cwd)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result
