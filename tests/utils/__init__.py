"""`tfpo_hf.utils`: PEFT adapter switching and the embedded default patient."""
