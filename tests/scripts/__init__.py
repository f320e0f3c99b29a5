"""Scripts the tests run in subprocesses (`python -m tests.scripts.<name>`, with the repository root on PYTHONPATH)."""
