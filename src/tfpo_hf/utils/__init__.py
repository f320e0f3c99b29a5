"""Helpers every stage shares: log-probabilities, PEFT adapters, Hub files and local paths, argument validation, the
file names a doctor is saved under, lazy package exports, and the embedded default patient."""
