"""`tfpo-hf`: dispatches to one script per stage (`tfpo_hf.scripts.<name>`), TRL-style flags and `--config file.yaml`.

    tfpo-hf rewards  --dataset PATH_OR_ID [--patient ID] --output DIR      # stage 1: score a preference dataset
    tfpo-hf train    --dataset PATH_OR_ID --output_dir DIR [--doctor ID | --doctor_layers K] [TFPOConfig flags]
    tfpo-hf generate --doctor PATH --prompt "..." [--beta 2] [--patient ID]     # stage 3: stream guided text
    tfpo-hf evaluate --doctor PATH [--beta 1 2 4] [--prompts FILE] [--judge vader]  # judge a beta sweep
    tfpo-hf demo     [--quick]                                                  # the whole pipeline on SmolLM2

`tfpo-hf SUBCOMMAND --help` lists every flag with its help text.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .scripts import SCRIPTS


def main(argv: list[str] | None = None) -> None:
    """Parse the subcommand, then hand the other arguments to its script's parser and `main`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="tfpo-hf",
        description="Test-time alignment with a TFPO-trained doctor (LLMdoctor). `tfpo-hf SUBCOMMAND --help` for flags.",
        epilog="\n".join(f"  {name:9s} {text}" for name, text in SCRIPTS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("subcommand", choices=list(SCRIPTS), help="the stage to run (listed below)")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return
    name = parser.parse_args(argv[:1]).subcommand
    script = importlib.import_module(f"tfpo_hf.scripts.{name}")
    arguments = script.make_parser(prog=f"tfpo-hf {name}").parse_args_and_config(argv[1:])
    script.main(*arguments)


if __name__ == "__main__":
    main()
