"""Tests of the TFPO losses against loop references written from the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tfpo_hf.training.losses import (
    subtrajectory_balance_loss,
    trajectory_bradley_terry_loss,
    value_discrimination_loss,
)

from ..helpers.reference_losses import subtrajectory_balance_loss_reference, value_discrimination_loss_reference


def random_batch(lengths, num_steps, seed, dtype=torch.float64, drift=0.0):
    """Random (logps [B, T], log_flows [B, T + 1], mask [B, T]); padding holds random values too.

    `drift` adds a steady slope to log F (as when rewards pile up while the doctor's logps do not),
    which makes the prefix differences large along the sequence.
    """
    generator = torch.Generator().manual_seed(seed)
    logps = -5 * torch.rand(len(lengths), num_steps, generator=generator, dtype=torch.float64)
    log_flows = torch.randn(len(lengths), num_steps + 1, generator=generator, dtype=torch.float64)
    log_flows = log_flows + drift * torch.arange(num_steps + 1, dtype=torch.float64)
    mask = torch.arange(num_steps)[None, :] < torch.tensor(lengths)[:, None]
    return logps.to(dtype), log_flows.to(dtype), mask


RAGGED_LENGTHS = [0, 9, 3, 1, 6]  # a length-0 row, a full-length row (T = 9), and ragged ones


def loss_and_grads(loss_fn, logps, log_flows, mask, **kwargs):
    logps = logps.detach().clone().requires_grad_(True)
    log_flows = log_flows.detach().clone().requires_grad_(True)
    loss = loss_fn(logps, log_flows, mask, **kwargs)
    loss.backward()
    return loss.detach(), logps.grad, log_flows.grad


# ---- subtrajectory balance: agreement with the double loop ------------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("max_span", [None, 1, 2, 4, 9, 50])
def test_subtb_matches_reference_float64(seed, max_span):
    logps, log_flows, mask = random_batch(RAGGED_LENGTHS, 9, seed)
    expected = subtrajectory_balance_loss_reference(logps, log_flows, mask, max_span=max_span)
    actual = subtrajectory_balance_loss(logps, log_flows, mask, max_span=max_span)
    assert actual.dtype == torch.float64
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("max_span", [None, 3])
def test_subtb_gradients_match_reference(max_span):
    logps, log_flows, mask = random_batch(RAGGED_LENGTHS, 9, seed=7)
    _, expected_logps_grad, expected_flows_grad = loss_and_grads(
        subtrajectory_balance_loss_reference, logps, log_flows, mask, max_span=max_span
    )
    _, logps_grad, flows_grad = loss_and_grads(subtrajectory_balance_loss, logps, log_flows, mask, max_span=max_span)
    assert torch.isfinite(logps_grad).all() and torch.isfinite(flows_grad).all()
    assert logps_grad.abs().sum() > 0
    torch.testing.assert_close(logps_grad, expected_logps_grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(flows_grad, expected_flows_grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("max_span", [None, 2])
def test_subtb_float32_matches_reference(max_span):
    logps, log_flows, mask = random_batch([0, 40, 17, 33], 40, seed=3, drift=2.0)
    expected = subtrajectory_balance_loss_reference(logps, log_flows, mask, max_span=max_span)
    actual = subtrajectory_balance_loss(logps.float(), log_flows.float(), mask, max_span=max_span)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("max_span", [None, 1, 8, 100])
def test_subtb_float32_stable_on_long_drifting_sequences(max_span):
    # T = 1024, log F drifting by ~5 per token: prefix values reach thousands while windowed
    # residuals stay small; the float64 closed form (checked against the loop above) is the oracle.
    logps, log_flows, mask = random_batch([1024, 700, 1, 512], 1024, seed=5, drift=5.0)
    expected = subtrajectory_balance_loss(logps, log_flows, mask, max_span=max_span)
    _, expected_logps_grad, _ = loss_and_grads(subtrajectory_balance_loss, logps, log_flows, mask, max_span=max_span)
    actual, logps_grad, _ = loss_and_grads(
        subtrajectory_balance_loss, logps.float(), log_flows.float(), mask, max_span=max_span
    )
    torch.testing.assert_close(actual.double(), expected, rtol=1e-5, atol=0)
    scale = expected_logps_grad.abs().max()
    assert (logps_grad.double() - expected_logps_grad).abs().max() < 1e-4 * scale


def test_subtb_float32_stable_when_one_step_dominates():
    # residual(0, n) ~ 1000 for every n while the other residuals are ~0.01-1: the mean of D is
    # large next to its spread, where N * sum(D^2) - (sum D)^2 would lose ~1e-4 relative in float32.
    generator = torch.Generator().manual_seed(0)
    logps = -3 * torch.rand(2, 2048, generator=generator, dtype=torch.float64)
    noise = 0.01 * torch.randn(2, 2048, generator=generator, dtype=torch.float64)
    log_flows = torch.nn.functional.pad((logps + noise).cumsum(1), (1, 0))
    log_flows[:, 1:] += 1000.0
    logps, log_flows = logps.float(), log_flows.float()
    mask = torch.ones(2, 2048, dtype=torch.bool)
    expected = subtrajectory_balance_loss(logps.double(), log_flows.double(), mask)
    actual = subtrajectory_balance_loss(logps, log_flows, mask)
    torch.testing.assert_close(actual.double(), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("max_span", [None, 2])
@pytest.mark.parametrize("garbage", [1e30, float("nan"), float("inf"), -float("inf")])
def test_subtb_ignores_padding_values(garbage, max_span):
    logps, log_flows, mask = random_batch(RAGGED_LENGTHS, 9, seed=11)
    clean_loss, clean_logps_grad, clean_flows_grad = loss_and_grads(
        subtrajectory_balance_loss, logps, log_flows, mask, max_span=max_span
    )
    state_mask = torch.nn.functional.pad(mask, (1, 0), value=True)
    dirty_logps = logps.masked_fill(~mask, garbage)
    dirty_flows = log_flows.masked_fill(~state_mask, garbage)
    loss, logps_grad, flows_grad = loss_and_grads(
        subtrajectory_balance_loss, dirty_logps, dirty_flows, mask, max_span=max_span
    )
    torch.testing.assert_close(loss, clean_loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(logps_grad, clean_logps_grad, rtol=1e-12, atol=0)
    torch.testing.assert_close(flows_grad, clean_flows_grad, rtol=1e-12, atol=0)
    assert (logps_grad[~mask] == 0).all() and (flows_grad[~state_mask] == 0).all()


def test_subtb_without_pairs_is_a_zero_with_grad():
    logps = torch.full((2, 4), float("nan"), requires_grad=True)
    log_flows = torch.zeros(2, 5, requires_grad=True)
    loss = subtrajectory_balance_loss(logps, log_flows, torch.zeros(2, 4, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert (logps.grad == 0).all() and (log_flows.grad == 0).all()


def test_subtb_leaves_sequences_without_pairs_out_of_the_mean():
    logps, log_flows, mask = random_batch([4], 4, seed=2)
    alone = subtrajectory_balance_loss(logps, log_flows, mask)
    padded_batch = subtrajectory_balance_loss(
        torch.cat([logps, logps]), torch.cat([log_flows, log_flows]), torch.cat([mask, mask & False])
    )
    torch.testing.assert_close(padded_batch, alone)


# ---- subtrajectory balance: sign convention and the zero-loss identity ------------------------


def test_subtb_hand_computed_three_token_example():
    # V constant (log V = 0), reward 1 on token 2 only: log Q(s_0..s_3) = [0, 0, 1, 1] = log F.
    log_flows = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    mask = torch.ones(1, 3, dtype=torch.bool)
    # logps = 0: D = [0, 0, 1, 1], pairs (0,1)..(2,3) have squared residuals 0,1,1,1,1,0.
    zeros = torch.zeros(1, 3, dtype=torch.float64)
    assert subtrajectory_balance_loss(zeros, log_flows, mask).item() == pytest.approx(4 / 6)
    # The inverted flow ratio (reward pushing the logp down) is penalised: D = [0, 0, 2, 2].
    inverted = torch.tensor([[0.0, -1.0, 0.0]], dtype=torch.float64)
    assert subtrajectory_balance_loss(inverted, log_flows, mask).item() == pytest.approx(16 / 6)

    logps = zeros.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([logps], lr=0.5)
    for _ in range(200):
        optimizer.zero_grad()
        subtrajectory_balance_loss(logps, log_flows, mask).backward()
        optimizer.step()
    optimum = logps.detach()[0]
    assert optimum[1] > optimum[0] + 0.9 and optimum[1] > optimum[2] + 0.9
    torch.testing.assert_close(optimum, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-6, rtol=0)


def test_subtb_zero_at_shaped_rewards():
    # log pi_d(y_{t+1} | s_t) = r_{t+1} + log V(s_{t+1}) - log V(s_t) is an exact zero of the loss.
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(3, 6, generator=generator, dtype=torch.float64)  # r_1..r_T
    log_values = torch.randn(3, 7, generator=generator, dtype=torch.float64)  # log V(s_0..s_T)
    log_q = torch.nn.functional.pad(rewards.cumsum(1), (1, 0))
    logps = rewards + log_values[:, 1:] - log_values[:, :-1]
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] + [0] * 5])
    assert subtrajectory_balance_loss(logps, log_q + log_values, mask).item() < 1e-24
    flipped_values = rewards - log_values[:, 1:] + log_values[:, :-1]
    assert subtrajectory_balance_loss(flipped_values, log_q + log_values, mask).item() > 1e-2


# ---- subtrajectory balance: properties --------------------------------------------------------


@st.composite
def subtb_inputs(draw):
    batch_size = draw(st.integers(1, 3))
    num_steps = draw(st.integers(0, 7))
    values = st.floats(-30, 30, allow_nan=False, allow_infinity=False)
    logps = draw(arrays(np.float64, (batch_size, num_steps), elements=values))
    log_flows = draw(arrays(np.float64, (batch_size, num_steps + 1), elements=values))
    lengths = draw(st.lists(st.integers(0, num_steps), min_size=batch_size, max_size=batch_size))
    mask = torch.arange(num_steps)[None, :] < torch.tensor(lengths)[:, None]
    max_span = draw(st.one_of(st.none(), st.integers(1, 8)))
    return torch.from_numpy(logps), torch.from_numpy(log_flows), mask, max_span


@settings(max_examples=150, deadline=None)
@given(subtb_inputs())
def test_subtb_property_matches_reference_and_is_non_negative(inputs):
    logps, log_flows, mask, max_span = inputs
    loss = subtrajectory_balance_loss(logps, log_flows, mask, max_span=max_span)
    expected = subtrajectory_balance_loss_reference(logps, log_flows, mask, max_span=max_span)
    assert loss.item() >= 0
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(subtb_inputs(), st.data())
def test_subtb_property_per_sequence_shift_invariance(inputs, data):
    logps, log_flows, mask, max_span = inputs
    shifts = data.draw(arrays(np.float64, (log_flows.shape[0], 1), elements=st.floats(-100, 100)))
    loss = subtrajectory_balance_loss(logps, log_flows, mask, max_span=max_span)
    shifted = subtrajectory_balance_loss(logps, log_flows + torch.from_numpy(shifts), mask, max_span=max_span)
    torch.testing.assert_close(shifted, loss, rtol=1e-9, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(subtb_inputs())
def test_subtb_property_zero_when_logps_are_flow_differences(inputs):
    _, log_flows, mask, max_span = inputs
    logps = log_flows[:, 1:] - log_flows[:, :-1]
    assert subtrajectory_balance_loss(logps, log_flows, mask, max_span=max_span).item() < 1e-20


# ---- subtrajectory balance: bf16 and validation -----------------------------------------------


@pytest.mark.parametrize("max_span", [None, 4])
def test_subtb_bf16_inputs(max_span):
    logps, log_flows, mask = random_batch([0, 64, 40, 13], 64, seed=4, drift=1.0)
    logps_bf16, log_flows_bf16 = logps.bfloat16(), log_flows.bfloat16()
    loss = subtrajectory_balance_loss(logps_bf16, log_flows_bf16, mask, max_span=max_span)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # the same (rounded) values in float64: only float32 reductions differ.
    same_values = subtrajectory_balance_loss_reference(
        logps_bf16.double(), log_flows_bf16.double(), mask, max_span=max_span
    )
    torch.testing.assert_close(loss.double(), same_values, rtol=1e-5, atol=0)
    # the unrounded float64 values: bf16 rounding of the inputs costs a few percent at most.
    unrounded = subtrajectory_balance_loss(logps, log_flows, mask, max_span=max_span)
    torch.testing.assert_close(loss.double(), unrounded, rtol=5e-2, atol=0)
    logps_bf16.requires_grad_(True)
    subtrajectory_balance_loss(logps_bf16, log_flows_bf16, mask, max_span=max_span).backward()
    assert logps_bf16.grad.dtype == torch.bfloat16 and torch.isfinite(logps_bf16.grad).all()


def test_subtb_rejects_bad_inputs():
    logps, log_flows, mask = random_batch([2, 3], 3, seed=0)
    with pytest.raises(ValueError, match=r"log_flows must have shape \[B, T \+ 1\] = \[2, 4\]"):
        subtrajectory_balance_loss(logps, log_flows[:, :-1], mask)
    with pytest.raises(ValueError, match=r"mask must have shape \[B, T\] = \[2, 3\]"):
        subtrajectory_balance_loss(logps, log_flows, mask[:, :2])
    with pytest.raises(ValueError, match=r"logps must have shape \[B, T\]"):
        subtrajectory_balance_loss(logps[0], log_flows[0], mask[0])
    with pytest.raises(ValueError, match="contiguous"):
        subtrajectory_balance_loss(logps, log_flows, torch.tensor([[1, 0, 1], [1, 1, 1]]))
    for bad_span in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_span"):
            subtrajectory_balance_loss(logps, log_flows, mask, max_span=bad_span)


# ---- value discrimination ---------------------------------------------------------------------


def test_value_discrimination_hand_computed():
    chosen = torch.tensor([[0.5, 0.0, 1.0], [0.0, 0.0, 0.0]])
    rejected = torch.tensor([[0.3, 0.05, 2.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # valid margins 0.2, -0.05, 0.0 -> hinges 0, 0.15, 0.1 (the masked -1.0 margin is ignored)
    loss = value_discrimination_loss(chosen, rejected, mask, gamma=0.1)
    assert loss.item() == pytest.approx(0.25 / 3, abs=1e-7)


@pytest.mark.parametrize("seed", range(3))
def test_value_discrimination_matches_reference(seed):
    generator = torch.Generator().manual_seed(seed)
    chosen = 0.3 * torch.randn(4, 6, generator=generator, dtype=torch.float64)
    rejected = 0.3 * torch.randn(4, 6, generator=generator, dtype=torch.float64)
    mask = torch.rand(4, 6, generator=generator) < 0.6
    expected = value_discrimination_loss_reference(chosen, rejected, mask, gamma=0.2)
    torch.testing.assert_close(value_discrimination_loss(chosen, rejected, mask, gamma=0.2), expected)


def test_value_discrimination_ignores_masked_positions():
    generator = torch.Generator().manual_seed(1)
    chosen = torch.randn(3, 5, generator=generator)
    rejected = torch.randn(3, 5, generator=generator)
    mask = torch.rand(3, 5, generator=generator) < 0.5
    mask[0, 0] = True
    clean = value_discrimination_loss(chosen, rejected, mask)
    dirty_chosen = chosen.masked_fill(~mask, float("nan")).requires_grad_(True)
    dirty_rejected = rejected.masked_fill(~mask, -float("inf")).requires_grad_(True)
    loss = value_discrimination_loss(dirty_chosen, dirty_rejected, mask)
    torch.testing.assert_close(loss, clean)
    loss.backward()
    assert torch.isfinite(dirty_chosen.grad).all() and (dirty_chosen.grad[~mask] == 0).all()


def test_value_discrimination_nothing_valid_is_a_zero_with_grad():
    chosen = torch.randn(2, 3, requires_grad=True)
    loss = value_discrimination_loss(chosen, torch.randn(2, 3), torch.zeros(2, 3))
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert (chosen.grad == 0).all()


def test_value_discrimination_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"log_values_rejected must have shape \[B, T\] = \[2, 3\]"):
        value_discrimination_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"mask must have shape"):
        value_discrimination_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3))


# ---- trajectory Bradley-Terry -----------------------------------------------------------------


def test_trajectory_bradley_terry_hand_computed():
    chosen = torch.tensor([1.0, 0.0])
    rejected = torch.tensor([0.0, 2.0])
    # beta * margins = 0.5, -1.0; -logsigmoid(x) = log(1 + exp(-x))
    expected = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(1.0))) / 2
    loss = trajectory_bradley_terry_loss(chosen, rejected, beta=0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert trajectory_bradley_terry_loss(rejected, chosen, beta=0.5).item() != pytest.approx(expected)


def test_trajectory_bradley_terry_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"rejected_logps must have shape \[B\] = \[2\]"):
        trajectory_bradley_terry_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"chosen_logps must have shape \[B\]"):
        trajectory_bradley_terry_loss(torch.zeros(2, 1), torch.zeros(2, 1))
