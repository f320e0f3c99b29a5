"""Stage 3, `tfpo_hf.guidance`: `DoctorLogitsProcessor`, `GuidedModel` and doctors loaded from disk for decoding."""
