"""One script per stage, TRL-style: each module has `make_parser(prog=None)` and `main(...)`, and runs as
`python -m tfpo_hf.scripts.<name>` or through `tfpo-hf <name>` (which only dispatches)."""

SCRIPTS = {
    "rewards": "Stage 1: score a preference dataset with the patient's two faces.",
    "train": "Stage 2: train a doctor with TFPO (scores the dataset first if needed).",
    "generate": "Stage 3: stream text from the patient guided by doctor(s).",
    "evaluate": "Compare unguided, guided (beta sweep) and best-of-N generations with a judge.",
    "demo": "The whole pipeline on the embedded SmolLM2 patient, with a report.",
}
