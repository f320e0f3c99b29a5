"""The `custom_generate` folder recipe for `transformers serve` (see `tfpo_hf.serving.transformers_serve`): copied into
a model folder as its `custom_generate/`, where transformers finds `generate.py` when it loads the model with
`trust_remote_code=True`. Only `generate.py` is copied; this file makes the folder part of the package."""
