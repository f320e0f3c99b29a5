"""TFPO losses as pure tensor functions (no model inside).

Shapes: B sequences in a batch, T transitions (response tokens) in the padded batch, so each row
has T + 1 states s_0..s_T, where s_0 is the prompt. A row with L real transitions has the L + 1
valid states s_0..s_L. Reductions run in float32 (float64 when an input is float64), and the losses
are returned in that dtype, so bf16 inputs give a float32 loss. Padding never reaches the arithmetic
(it is replaced with `torch.where`, not multiplied by the mask), so NaN or inf there is harmless.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def prefix_scores(
    token_rewards: torch.Tensor, mask: torch.Tensor, ref_logps: torch.Tensor | None = None
) -> torch.Tensor:
    """log Q(s_0..s_T) = sum_{k<=t} [r_k + log pi_ref(y_k | s_{k-1})], with log Q(s_0) = 0.

    Args:
        token_rewards: [B, T], r_1..r_T of each response.
        mask: [B, T], 1 for real transitions, 0 for padding (padding adds nothing).
        ref_logps: [B, T], log pi_ref(y_{t+1} | s_t) of a frozen reference policy, or None for the paper's
            literal prefix score (cumulative reward only).

    Returns:
        [B, T + 1] float32 (float64 for float64 inputs); values on padding states repeat the last real one.
    """
    if token_rewards.shape != mask.shape or (ref_logps is not None and ref_logps.shape != mask.shape):
        shapes = [list(t.shape) for t in (token_rewards, mask, ref_logps) if t is not None]
        raise ValueError(f"token_rewards, mask and ref_logps must share the shape [B, T], got {shapes}")
    dtype = torch.promote_types(token_rewards.dtype, torch.float32)
    steps = token_rewards.to(dtype)
    if ref_logps is not None:
        steps = steps + ref_logps.to(dtype)
    steps = torch.where(mask.bool(), steps, 0.0)
    return F.pad(steps.cumsum(-1), (1, 0))


def _check_subtb_inputs(
    logps: torch.Tensor, log_flows: torch.Tensor, mask: torch.Tensor, max_span: int | None
) -> None:
    """Raise on the shapes, mask and span `subtrajectory_balance_loss` cannot use (see its docstring)."""
    if logps.dim() != 2:
        raise ValueError(f"logps must have shape [B, T], got {list(logps.shape)}")
    batch_size, num_steps = logps.shape
    if tuple(log_flows.shape) != (batch_size, num_steps + 1):
        raise ValueError(
            f"log_flows must have shape [B, T + 1] = [{batch_size}, {num_steps + 1}] "
            f"for logps of shape [B, T] = [{batch_size}, {num_steps}], got {list(log_flows.shape)}"
        )
    if tuple(mask.shape) != (batch_size, num_steps):
        raise ValueError(
            f"mask must have shape [B, T] = [{batch_size}, {num_steps}] like logps, got {list(mask.shape)}"
        )
    if max_span is not None and (isinstance(max_span, bool) or not isinstance(max_span, int) or max_span < 1):
        raise ValueError(f"max_span must be a positive int or None, got {max_span!r}")
    transition_mask = mask.bool()
    if (transition_mask[:, 1:] & ~transition_mask[:, :-1]).any():
        raise ValueError("mask must be contiguous from t = 0: each row is ones followed by zeros")


def subtrajectory_balance_loss(
    logprobs: torch.Tensor,
    log_flows: torch.Tensor,
    mask: torch.Tensor,
    max_span: int | None = None,
) -> torch.Tensor:
    """Subtrajectory balance over every pair of valid states, in O(T) time and memory.

    residual(m, n) = [log F(s_n) - log F(s_m)] - sum_{k=m}^{n-1} logprobs_k, for 0 <= m < n <= L.

    Args:
        logprobs: [B, T], log pi_d(y_{t+1} | s_t) for t = 0..T-1 (the one argument not spelled `logps`: the
            signature is the promised public API of `tfpo_hf.losses`).
        log_flows: [B, T + 1], log F(s_0..s_T) = log Q + log V.
        mask: [B, T], 1 (or True) for real transitions, 0 for padding; contiguous from t = 0.
        max_span: if given, only pairs with n - m <= max_span count (a positive int).

    Returns:
        Scalar: the mean over sequences of the mean over that sequence's pairs of residual^2.
        Sequences without transitions have no pairs and are left out; if no sequence has a pair,
        a zero that still carries grad. float32, or float64 for float64 inputs.

    Raises:
        ValueError: on shapes other than the above, a mask that is not contiguous from t = 0 (this
            check reads the mask on the host: one device sync), or a max_span that is not a positive int.

    With D_t = log F(s_t) - sum_{k<t} logprobs_k, residual(m, n) = D_n - D_m, so the sum over all
    pairs of a sequence with N valid states is N * sum_t (D_t - mean D)^2.
    """
    _check_subtb_inputs(logprobs, log_flows, mask, max_span)
    transition_mask = mask.bool()
    dtype = torch.promote_types(torch.promote_types(logprobs.dtype, log_flows.dtype), torch.float32)
    # state t + 1 is valid exactly when transition t is real; s_0 always is.
    state_mask = F.pad(transition_mask, (1, 0), value=True)  # [B, T + 1]
    # residual(t, t + 1), with padding dropped by `where` so that the scan below only sees real
    # values (a subtraction's backward never reads them: NaN or inf there cannot reach the grads).
    log_flows = log_flows.to(dtype)
    step_residuals = torch.where(transition_mask, log_flows[:, 1:] - log_flows[:, :-1] - logprobs.to(dtype), 0.0)
    # residual(0, t) = D_t - D_0. Summing per-step residuals (not D = log F - C directly) keeps the
    # values small near the optimum, where float32 precision matters most.
    residuals_from_start = torch.where(state_mask, F.pad(step_residuals.cumsum(1), (1, 0)), 0.0)

    if max_span is None:
        pair_sums, pair_counts = _all_pair_sums(residuals_from_start, state_mask)
    else:
        pair_sums, pair_counts = _windowed_pair_sums(residuals_from_start, state_mask, max_span)
    sequence_losses = pair_sums / pair_counts.clamp(min=1)  # exactly 0 for sequences without pairs
    num_sequences_with_pairs = transition_mask.any(dim=1).sum().clamp(min=1)
    return sequence_losses.sum() / num_sequences_with_pairs


def _all_pair_sums(residuals_from_start: torch.Tensor, state_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of residual^2 over all pairs m < n of valid states, and the number of pairs; each [B].

    `residuals_from_start` [B, T + 1] holds D_t - D_0 at valid states and 0 elsewhere.
    """
    num_states = state_mask.sum(1).to(residuals_from_start.dtype)  # [B], N = L + 1 >= 1
    mean = residuals_from_start.sum(1, keepdim=True) / num_states[:, None]
    centred = torch.where(state_mask, residuals_from_start - mean, 0.0)
    pair_sums = num_states * centred.square().sum(1)
    pair_counts = num_states * (num_states - 1) / 2
    return pair_sums, pair_counts


def _windowed_pair_sums(
    residuals_from_start: torch.Tensor, state_mask: torch.Tensor, max_span: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of residual^2 over pairs of valid states with 1 <= n - m <= max_span, and their number; each [B].

    For each state n, sum_{m=n-w}^{n-1} (D_n - D_m)^2 = count * a_n^2 - 2 a_n sum(a_m) + sum(a_m^2)
    with a = D - reference, where the window sums come from prefix sums. States are cut into chunks
    of w = span states; a window of a state in chunk c lies in chunks c - 1 and c, so prefix sums run
    over those 2w states only, relative to the first state of chunk c. Values stay local, which
    avoids the cancellation that global prefix sums would suffer when D drifts along the sequence.
    """
    batch_size, num_states = residuals_from_start.shape
    span = max(1, min(max_span, num_states - 1))
    num_chunks = -(-num_states // span)
    # one chunk of zeros in front (the window of chunk 0 reaches before s_0), zeros after the end.
    padding = (span, num_chunks * span - num_states)
    chunked_values = F.pad(residuals_from_start, padding).view(batch_size, num_chunks + 1, span)
    chunked_valid = F.pad(state_mask, padding, value=False).view(batch_size, num_chunks + 1, span)
    window_values = torch.cat([chunked_values[:, :-1], chunked_values[:, 1:]], dim=2)  # [B, C, 2w]
    window_valid = torch.cat([chunked_valid[:, :-1], chunked_valid[:, 1:]], dim=2)
    reference = chunked_values[:, 1:, :1]  # [B, C, 1], D at the first state of each chunk
    relative = torch.where(window_valid, window_values - reference, 0.0)
    prefix = F.pad(relative.cumsum(2), (1, 0))  # [B, C, 2w + 1]
    prefix_of_squares = F.pad(relative.square().cumsum(2), (1, 0))
    # state j of chunk c sits at index w + j of its window row; its window is indices j..w + j - 1.
    window_sums = prefix[:, :, span:-1] - prefix[:, :, :span]  # [B, C, w]
    window_sums_of_squares = prefix_of_squares[:, :, span:-1] - prefix_of_squares[:, :, :span]
    current = relative[:, :, span:]
    positions = torch.arange(num_states, device=state_mask.device)
    window_sizes = torch.where(state_mask, positions.clamp(max=span), 0)  # [B, T + 1], min(n, w)
    window_sizes_chunked = F.pad(window_sizes, (0, padding[1])).view(batch_size, num_chunks, span)
    per_state_sums = window_sizes_chunked * current.square() - 2 * current * window_sums + window_sums_of_squares
    per_state_sums = torch.where(window_sizes_chunked > 0, per_state_sums, 0.0)
    pair_sums = per_state_sums.sum(dim=(1, 2))
    pair_counts = window_sizes.sum(1).to(residuals_from_start.dtype)
    return pair_sums, pair_counts


def value_discrimination_loss(
    log_values_chosen: torch.Tensor,
    log_values_rejected: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 0.1,
) -> torch.Tensor:
    """Hinge loss that ranks the values of chosen states above those of rejected states.

    Args:
        log_values_chosen: [B, T], log V of the chosen response's states s_1..s_T
            (index 0 is the state after the first response token).
        log_values_rejected: [B, T], the same for the rejected response of the same prompt.
        mask: [B, T], 1 (or True) where the position is valid in both responses.
        gamma: the margin.

    Returns:
        Scalar: mean over valid positions of the whole batch of
        relu(gamma - (log_values_chosen - log_values_rejected)); a zero with grad when nothing is
        valid. float32, or float64 for float64 inputs.
    """
    if log_values_chosen.dim() != 2:
        raise ValueError(f"log_values_chosen must have shape [B, T], got {list(log_values_chosen.shape)}")
    expected = list(log_values_chosen.shape)
    if list(log_values_rejected.shape) != expected:
        raise ValueError(
            f"log_values_rejected must have shape [B, T] = {expected} like log_values_chosen, "
            f"got {list(log_values_rejected.shape)}"
        )
    if list(mask.shape) != expected:
        raise ValueError(f"mask must have shape [B, T] = {expected} like log_values_chosen, got {list(mask.shape)}")
    valid = mask.bool()
    dtype = torch.promote_types(torch.promote_types(log_values_chosen.dtype, log_values_rejected.dtype), torch.float32)
    margins = log_values_chosen.to(dtype) - log_values_rejected.to(dtype)
    hinges = torch.where(valid, torch.relu(gamma - margins), 0.0)  # drops padding, NaN included
    return hinges.sum() / valid.sum().clamp(min=1)


def trajectory_bradley_terry_loss(
    chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, beta: float = 1.0
) -> torch.Tensor:
    """Sequence-level Bradley-Terry loss of a GenARM-style trajectory doctor (a baseline).

    Args:
        chosen_logps: [B], summed log-probabilities of the chosen responses.
        rejected_logps: [B], the same for the rejected responses.
        beta: scale of the log-probability difference.

    Returns:
        Scalar: mean of -logsigmoid(beta * (chosen_logps - rejected_logps)); float32, or float64
        for float64 inputs.
    """
    if chosen_logps.dim() != 1 or chosen_logps.numel() == 0:
        raise ValueError(f"chosen_logps must have shape [B] with B >= 1, got {list(chosen_logps.shape)}")
    if rejected_logps.shape != chosen_logps.shape:
        raise ValueError(
            f"rejected_logps must have shape [B] = {list(chosen_logps.shape)} like chosen_logps, "
            f"got {list(rejected_logps.shape)}"
        )
    dtype = torch.promote_types(torch.promote_types(chosen_logps.dtype, rejected_logps.dtype), torch.float32)
    margins = beta * (chosen_logps.to(dtype) - rejected_logps.to(dtype))
    return -F.logsigmoid(margins).mean()
