"""HTTP servers the tests start on loopback (vLLM's OpenAI-compatible server, `transformers serve`): started in a
process group of their own, waited for, and always stopped by their PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def post_json(url: str, body: dict, timeout: float = 300) -> tuple[int, dict]:
    """POST `body` as JSON; the HTTP status and the decoded JSON answer (error answers included)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextlib.contextmanager
def running_server(command: list[str], env: dict, health_url: str, log_path: Path, timeout: float = 300):
    """Run `command` until the block ends: waits until `health_url` answers 200 (failing with the end of the
    server's log if it exits or `timeout` seconds pass), then, whatever happens, stops the server's process group by
    its PID (SIGTERM, then SIGKILL after 30 s; the group's leftovers SIGKILL)."""
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _answers(health_url):
            if server.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-4000:]
                raise AssertionError(f"server {'exited' if server.poll() is not None else 'timed out'}:\n{tail}")
            time.sleep(1)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        with contextlib.suppress(ProcessLookupError):  # what the server started and left behind
            os.killpg(server.pid, signal.SIGKILL)
