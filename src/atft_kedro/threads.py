"""Torch's intra-op thread count, set for a block of work and restored after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Run the block with torch on ``n`` threads; the count it had is restored on the way out (an
    error included) and is what the block receives."""
    import torch  # lazily: the evaluation's baselines import this module without needing torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield before
    finally:
        torch.set_num_threads(before)
