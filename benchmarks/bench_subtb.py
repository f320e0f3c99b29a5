"""SubTB loss: the O(T) closed form versus the plain double-loop reference, forward + backward.

Same random inputs for both (B sequences, ragged lengths, the first row full length); prints the
minimum and median time over repeats, the speed ratio of the minima and the largest absolute
differences of the loss and of the gradients. The reference is slow (O(T^2) autograd ops per
sequence, about 20 s and 1.5 GB at B=8, T=256), so it runs only `--reference-repeats` times.

    python benchmarks/bench_subtb.py [--shapes 8x256 8x1024] [--threads 1] [--skip-reference-above T]
    python benchmarks/bench_subtb.py --smoke     # shapes 2x16 and 2x32, 3 repeats, the reference at T=16 only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from tfpo_hf.training.losses import subtrajectory_balance_loss


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.helpers
from tests.helpers.reference_losses import subtrajectory_balance_loss_reference  # noqa: E402


# --smoke: seconds-long, every printed line still printed (explicit flags still win over these).
SMOKE = {"shapes": ["2x16", "2x32"], "repeats": 3, "skip_reference_above": 16}


def make_inputs(batch_size: int, num_steps: int, dtype: torch.dtype, seed: int):
    """logps [B, T] in (-5, 0), log_flows [B, T + 1] ~ N(0, 1), mask [B, T] with lengths in [1, T]."""
    generator = torch.Generator().manual_seed(seed)
    logps = -5 * torch.rand(batch_size, num_steps, generator=generator)
    log_flows = torch.randn(batch_size, num_steps + 1, generator=generator)
    lengths = torch.randint(1, num_steps + 1, (batch_size,), generator=generator)
    lengths[0] = num_steps
    mask = torch.arange(num_steps)[None, :] < lengths[:, None]
    return logps.to(dtype), log_flows.to(dtype), mask


def forward_backward(loss_fn, logps, log_flows, mask):
    """One forward + backward; returns (seconds, loss, grad of logps, grad of log_flows)."""
    logps = logps.clone().requires_grad_(True)
    log_flows = log_flows.clone().requires_grad_(True)
    start = time.perf_counter()
    loss = loss_fn(logps, log_flows, mask)
    loss.backward()
    seconds = time.perf_counter() - start
    return seconds, loss.detach(), logps.grad, log_flows.grad


def time_repeats(loss_fn, inputs, repeats: int):
    """(min seconds, median seconds, last (loss, grads)) over `repeats` forward + backward runs."""
    times = []
    for _ in range(repeats):
        seconds, *result = forward_backward(loss_fn, *inputs)
        times.append(seconds)
    return min(times), statistics.median(times), result


def format_seconds(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["8x256", "8x1024"], help="BxT pairs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids OpenMP stalls)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=200, help="closed-form runs per shape")
    parser.add_argument("--reference-repeats", type=int, default=1, help="reference runs per shape")
    parser.add_argument(
        "--skip-reference-above",
        type=int,
        default=None,
        metavar="T",
        help="time only the closed form when T is above this",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help=f"a run of seconds, what the tests run: {SMOKE}")
    args = parser.parse_args()
    if args.smoke:
        parser.set_defaults(**SMOKE)
        args = parser.parse_args()

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(f"SubTB loss, forward + backward, {args.dtype}, torch {torch.__version__}, {args.threads} thread(s)")
    for shape in args.shapes:
        batch_size, num_steps = (int(part) for part in shape.split("x"))
        inputs = make_inputs(batch_size, num_steps, dtype, args.seed)
        lengths = inputs[2].sum(1).tolist()
        print(f"\nB={batch_size} T={num_steps} lengths={lengths}")
        closed_min, closed_median, closed_result = time_repeats(subtrajectory_balance_loss, inputs, args.repeats)
        print(
            f"  closed form: min {format_seconds(closed_min)}, median {format_seconds(closed_median)}"
            f" over {args.repeats} runs"
        )
        if args.skip_reference_above is not None and num_steps > args.skip_reference_above:
            print("  reference: skipped (--skip-reference-above)")
            continue
        reference_min, reference_median, reference_result = time_repeats(
            subtrajectory_balance_loss_reference, inputs, args.reference_repeats
        )
        print(
            f"  reference:   min {format_seconds(reference_min)}, median {format_seconds(reference_median)}"
            f" over {args.reference_repeats} run(s)"
        )
        print(f"  speed ratio (min / min): {reference_min / closed_min:,.0f}x")
        loss_diff, logps_grad_diff, log_flows_grad_diff = (
            (closed - reference).abs().max().item() for closed, reference in zip(closed_result, reference_result)
        )
        print(
            f"  loss {closed_result[0].item():.6f} vs {reference_result[0].item():.6f}; max abs diff:"
            f" loss {loss_diff:.2e}, grad logps {logps_grad_diff:.2e}, grad log_flows {log_flows_grad_diff:.2e}"
            f" (max abs grads {reference_result[1].abs().max().item():.2e}, {reference_result[2].abs().max().item():.2e})"
        )


if __name__ == "__main__":
    main()
