"""Fail unless every `name==version` pin in a constraints file equals the `name>=version` floor in pyproject.toml.

Usage: python constraints/check_floors.py [constraints/lowest.txt] [pyproject.toml]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s#;]+)", text, flags=re.M))


def floors(text: str) -> dict[str, str]:
    return dict(re.findall(r"\"\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([^\s,;\"<]+)", text))


def same_version(a: str | None, b: str) -> bool:
    """`5.0` and `5.0.0` are the same release."""
    return a is not None and re.sub(r"(\.0)+$", "", a) == re.sub(r"(\.0)+$", "", b)


def main(constraints: str = "constraints/lowest.txt", pyproject: str = "pyproject.toml") -> int:
    pinned, declared = pins(Path(constraints).read_text()), floors(Path(pyproject).read_text())
    errors = [
        f"{name}=={version} in {constraints}, but pyproject.toml says {name}>={declared.get(name, '(no floor)')}"
        for name, version in pinned.items()
        if not same_version(declared.get(name), version)
    ]
    for error in errors:
        print(error, file=sys.stderr)
    if not errors:
        print(f"{constraints} pins the pyproject.toml floors: " + ", ".join(f"{n}=={v}" for n, v in pinned.items()))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
