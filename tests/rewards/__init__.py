"""Stage 1, `tfpo_hf.rewards`: the token-reward scorer, its config, preference data and the reward visualisations."""
