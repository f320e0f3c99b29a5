"""The smoke modes of the scripts under `benchmarks/`: each runs in seconds on tiny random models."""
