"""Cache keys for `datasets.map` results that depend on a model: derived from the model's weights, not its identity."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def weights_probe(model: nn.Module) -> list[tuple[str, float, float]]:
    """(name, sum, sum of squares) of every parameter: changes when any weight changes, cheap to compute and hash."""
    return [(name, p.float().sum().item(), p.float().square().sum().item()) for name, p in model.named_parameters()]
