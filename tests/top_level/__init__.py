"""The package's top level and what surrounds it: the `tfpo-hf` CLI, the demo, evaluation, examples/, docs/ and the
lazy `import tfpo_hf`."""
