"""Data-parallel training under ``torchrun`` with DistributedDataParallel.

    torchrun --standalone --nproc_per_node=N -m atft_kedro --pipelines training --params training.mode=optimized

Every rank runs the same Kedro pipeline; the training loop finds the ranks in torchrun's
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), joins the process group (NCCL on GPUs, gloo
on CPUs) and wraps the model in DDP. What changes from one process:

- A step's ``dates_per_batch`` dates (the same global step as one process takes) are split across
  the ranks, each rank training on its share. The loss parts are reduced so that the shares' sum is
  the loss of the merged batch: counts (stocks with a target, valid dates) are summed over the
  ranks, and the Sharpe term, a statistic across dates, is computed on the long-short returns
  gathered from every rank. DDP averages the gradients, so each rank backpropagates ``world`` times
  its share: the update is the one-process update on the merged dates (a test checks it).
- A batch with non-finite inputs or loss on any rank is skipped by all of them (the flag is
  all-reduced, so no rank waits for a step the others dropped).
- Validation, checkpoints, history and early stopping run on rank 0; the decision to stop is
  broadcast. Every rank reads the same checkpoints to start or resume, so ranks on several hosts
  need a shared ``data/`` folder.
- Phases 0 and 1 leave the GAT (and phase 0 FAN and the longer horizons) out of the forward pass:
  DDP is told to look for unused parameters there (their gradients stay None, as in one process).
- Dropout draws differ by rank: each rank's generator is seeded from (seed, phase, epoch, rank) at
  the start of every epoch, so a resumed run draws what the uninterrupted one would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed._functional_collectives import all_gather_single_autograd


@dataclass(frozen=True)
class Ranks:
    """This process's place among torchrun's: ``rank`` of ``world``, ``local`` on its host."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls) -> "Ranks":
        """The ranks torchrun set in the environment (one process without them)."""
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def join(device: torch.device) -> Ranks:
    """Join torchrun's process group once per process (NCCL for CUDA devices, gloo otherwise)."""
    ranks = Ranks.from_env()
    if ranks.parallel and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ranks


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """A rank's device: its own GPU (``cuda:LOCAL_RANK``) when training on CUDA."""
    if device.type == "cuda" and ranks.parallel:
        torch.cuda.set_device(ranks.local)
        return torch.device("cuda", ranks.local)
    return device


def step_shares(order: list[int], per_step: int, ranks: Ranks) -> list[list[int]]:
    """The dates of each step, this rank's share of each: ``order`` spread evenly over the fewest
    steps of at most ``per_step`` dates (298 dates at 8: 32 steps of 8 and 6 of 7, not 37 of 8 and
    one of 2). The Sharpe term, a mean over a standard deviation across a step's dates, is unbounded
    on two or three dates: one such step a phase made an epoch's mean loss meaningless (-0.57
    against -0.15 in the other epochs of a tiny optimized run). With several ranks, no more steps
    than every rank can have a date in (then up to ``per_step + world - 1`` dates a step)."""
    if ranks.parallel and per_step < ranks.world:
        raise ValueError(
            f"training.dates_per_batch ({per_step}) must be at least the number of processes ({ranks.world}): "
            "each process trains on its share of a step's dates"
        )
    if not len(order):
        return []
    n_steps = -(-len(order) // per_step)
    if ranks.parallel:
        n_steps = max(1, min(n_steps, len(order) // ranks.world))
    steps = np.array_split(np.asarray(order, dtype=np.int64), n_steps)
    if ranks.parallel:
        steps = [np.array_split(s, ranks.world)[ranks.rank] for s in steps]
    return [[int(t) for t in s] for s in steps]


def everywhere(flag: torch.Tensor, ranks: Ranks) -> bool:
    """Whether ``flag`` (a 0-dim bool tensor on the rank's device) holds on every rank (every rank
    gets the same answer): one read of the device."""
    if not ranks.parallel:
        return bool(flag)
    t = flag.to(torch.int32).reshape(1)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t)


def from_main(value, ranks: Ranks):
    """Rank 0's ``value`` (a picklable object) on every rank."""
    if not ranks.parallel:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ranks: Ranks) -> None:
    if ranks.parallel:
        dist.barrier()


def summed(values: dict[str, float], ranks: Ranks) -> dict[str, float]:
    """Each value summed over the ranks (float64)."""
    if not ranks.parallel or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(values, t.tolist()))


class StepShards:
    """What the loss of a step needs from the other ranks' shares: counts summed over ranks, and
    per-date series gathered (with gradients) so that statistics across dates see every date.
    ``per_step``: the dates of a step, which bounds a rank's share, so the gathered series have a
    fixed size and nothing is read back to size them."""

    def __init__(self, ranks: Ranks, per_step: int):
        self.world = ranks.world
        self.max_dates = -(-(per_step + ranks.world - 1) // ranks.world)  # a merged last step included (step_shares)

    def total(self, counts: torch.Tensor) -> torch.Tensor:
        out = counts.detach().clone()
        dist.all_reduce(out)
        return out

    def gather(self, series: torch.Tensor) -> torch.Tensor:
        """[..., D] on each rank -> [..., world * max_dates] (ranks' dates side by side, each
        padded with zeros: the caller gathers its mask the same way)."""
        padded = torch.nn.functional.pad(series, (0, self.max_dates - series.shape[-1])).movedim(-1, 0).contiguous()
        gathered = all_gather_single_autograd(padded, 0, dist.group.WORLD)  # its backward sums each rank's gradient
        return gathered.movedim(0, -1)


def wrap(model: torch.nn.Module, device: torch.device, ranks: Ranks, partial: bool) -> torch.nn.Module:
    """The model DDP-wrapped for a parallel run (itself otherwise). ``partial``: the phase leaves
    some parameters out of the forward pass. Buffers are synchronised once, not every step: the
    model's (the target scale) are set at the start and never change."""
    if not ranks.parallel:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False, find_unused_parameters=partial)
