"""The test suite of tfpo_hf: one folder per stage of `src/tfpo_hf/`, shared helpers in `tests/helpers/`."""
