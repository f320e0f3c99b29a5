"""`tfpo_hf.doctor`: the doctor model (LM plus value head), saving and loading it, its model card and the Hub."""
