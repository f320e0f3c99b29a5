"""Plain loop references for `tfpo_hf.training.losses`, written straight from the definitions.

Shared by tests/training/test_losses.py, tests/training/test_trainer.py and benchmarks/bench_subtb.py.
"""

from __future__ import annotations

import torch


def subtrajectory_balance_loss_reference(
    logps: torch.Tensor,
    log_flows: torch.Tensor,
    mask: torch.Tensor,
    max_span: int | None = None,
) -> torch.Tensor:
    """SubTB by a double loop over the pairs m < n of each sequence: O(T^2) autograd ops per sequence.

    logps [B, T], log_flows [B, T + 1], mask [B, T] (contiguous from t = 0). Returns the mean
    over sequences with at least one pair of the mean over pairs of
    ([log F(s_n) - log F(s_m)] - sum_{k=m}^{n-1} logps_k)^2, with only n - m <= max_span when
    max_span is given; a plain zero when no sequence has a pair.
    """
    sequence_losses = []
    for row in range(logps.shape[0]):
        length = int(mask[row].sum())
        row_logps = logps[row]
        row_log_flows = log_flows[row].unbind()
        squared_residuals = []
        for m in range(length):
            for n in range(m + 1, length + 1):
                if max_span is not None and n - m > max_span:
                    break
                residual = (row_log_flows[n] - row_log_flows[m]) - row_logps[m:n].sum()
                squared_residuals.append(residual**2)
        if squared_residuals:
            sequence_losses.append(torch.stack(squared_residuals).mean())
    if not sequence_losses:
        return logps.new_zeros(())
    return torch.stack(sequence_losses).mean()


def value_discrimination_loss_reference(
    log_values_chosen: torch.Tensor,
    log_values_rejected: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 0.1,
) -> torch.Tensor:
    """Mean of max(0, gamma - (chosen - rejected)) over the valid positions of [B, T] inputs, by a loop."""
    hinges = []
    for row in range(log_values_chosen.shape[0]):
        for position in range(log_values_chosen.shape[1]):
            if mask[row, position]:
                margin = log_values_chosen[row, position] - log_values_rejected[row, position]
                hinges.append(max(0.0, gamma - float(margin)))
    return torch.tensor(sum(hinges) / len(hinges) if hinges else 0.0, dtype=torch.float64)
