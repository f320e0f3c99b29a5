"""Stage 1: score every completion token of a preference dataset with the patient's two faces.

tfpo-hf rewards --dataset prefs.jsonl [--patient ID] --output scored_dataset [--theta 0.5]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import TrlParser

from ..rewards.config import TokenRewardConfig
from .arguments import DatasetArguments, PatientArguments


@dataclass
class RewardsScriptArguments(DatasetArguments, PatientArguments):
    """The flags of `tfpo-hf rewards`: the dataset, the patient and where the scored dataset goes."""

    output: str = field(default="scored_dataset", metadata={"help": "Folder the scored dataset is saved to."})


def main(script_args: RewardsScriptArguments, reward_config: TokenRewardConfig) -> None:
    """Score every completion token of the dataset with the patient's two faces and save the scored dataset."""
    from ..rewards.scorer import TokenRewardScorer, reward_statistics

    dataset = script_args.load()
    patient, tokenizer = PatientArguments.load(script_args)
    scored = TokenRewardScorer(patient, tokenizer, reward_config).score_dataset(dataset)
    scored.save_to_disk(script_args.output)
    stats = reward_statistics(scored)
    print(
        f"Scored {len(scored)} pairs, {stats['completion_tokens']} completion tokens. Non-zero rewards: "
        f"{stats['nonzero_fraction']:.1%} (theta={reward_config.theta}); mean reward chosen "
        f"{stats['mean_chosen_reward']:+.3f}, rejected {stats['mean_rejected_reward']:+.3f}. Saved to {script_args.output}"
    )


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser of the script's flags and `TokenRewardConfig`'s (`--config file.yaml` too)."""
    return TrlParser((RewardsScriptArguments, TokenRewardConfig), prog=prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
