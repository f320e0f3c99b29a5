"""The whole pipeline on the embedded SmolLM2 patient, with a report (`tfpo_hf.demo`).

tfpo-hf demo [--quick] [--output_dir tfpo_demo]
"""

from __future__ import annotations

from trl import TrlParser


def make_parser(prog: str | None = None) -> TrlParser:
    from ..demo.pipeline import DemoArguments

    return TrlParser((DemoArguments,), prog=prog)


def main(demo_args) -> None:
    from ..demo.pipeline import run_demo

    run_demo(demo_args)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
