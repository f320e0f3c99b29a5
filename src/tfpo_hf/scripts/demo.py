"""The whole pipeline on the embedded SmolLM2 patient, with a report (`tfpo_hf.demo`).

tfpo-hf demo [--quick] [--output_dir tfpo_demo] [--guidance_beta 2] [--baseline_betas 1 2 4]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trl import TrlParser


if TYPE_CHECKING:
    from ..demo.arguments import DemoArguments


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser of `DemoArguments` (one flag per field, `--config file.yaml` too)."""
    from ..demo.arguments import DemoArguments

    return TrlParser((DemoArguments,), prog=prog)


def main(demo_args: DemoArguments) -> None:
    """Run the demo (`tfpo_hf.demo.run_demo`)."""
    from ..demo.pipeline import run_demo

    run_demo(demo_args)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
