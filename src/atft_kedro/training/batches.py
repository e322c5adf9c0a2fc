"""Batches for training and prediction: the order of the dates, the DataLoader or the
device-resident arrays, the finite check, and the autocast of optimized mode."""

from __future__ import annotations

import logging

import torch

from atft_kedro.graph.store import GraphSet
from atft_kedro.training.config import TrainConfig
from atft_kedro.training.data import Batch, DateDataset, ResidentDates, TrainingArrays, collate_dates
from atft_kedro.training.distributed import Ranks, step_shares

log = logging.getLogger(__name__)


def device_of(cfg: TrainConfig) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def date_order(n: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)  # a function of (seed, epoch) only: exact resume
    return torch.randperm(n, generator=g).tolist()


def dates_per_step(cfg: TrainConfig) -> int:
    return cfg.dates_per_batch if cfg.mode == "optimized" else 1


def make_loader(dataset: DateDataset, cfg: TrainConfig, steps: list[list[int]] | None = None) -> torch.utils.data.DataLoader:
    """Batches of ``dataset``: the positions of each of ``steps`` (None: every date in order,
    ``dates_per_step`` at a time), read by the configured workers."""
    workers = cfg.num_workers if cfg.mode == "optimized" else 0
    batching = {"batch_size": dates_per_step(cfg)} if steps is None else {"batch_sampler": steps}
    return torch.utils.data.DataLoader(
        dataset, collate_fn=collate_dates, num_workers=workers, **batching,
        multiprocessing_context="spawn" if workers else None,  # never fork a process that runs Polars
        persistent_workers=False, pin_memory=False,
    )  # fmt: skip


def resident_dates(arrays: TrainingArrays, graphs: GraphSet, cfg: TrainConfig, device: torch.device, phase: int) -> ResidentDates | None:
    """Optimized mode on CUDA keeps the arrays and graphs on the GPU when they take under half its free memory."""
    if cfg.mode != "optimized" or device.type != "cuda" or not cfg.resident_data:
        return None
    need, free = ResidentDates.nbytes(arrays, graphs), torch.cuda.mem_get_info(device)[0]
    if need > free / 2:
        log.info("phase %d: the training arrays and graphs (%.1f GB) exceed half of the GPU's free %.1f GB; batches come through the DataLoader",
                 phase, need / 1e9, free / 1e9)  # fmt: skip
        return None
    log.info("phase %d: training arrays and graphs on %s (%.1f GB), batches gathered there", phase, device, need / 1e9)
    return ResidentDates(arrays, graphs, cfg.window, device)


def train_batches(dataset: DateDataset, cfg: TrainConfig, seed: int, resident: ResidentDates | None, ranks: Ranks = Ranks(),
                  nodes: int | None = None):  # fmt: skip
    """The epoch's batches in the order of ``seed`` (this rank's share of each step's dates under
    torchrun): from the device-resident arrays, or a DataLoader. ``nodes`` (resident arrays only):
    every batch padded to ``dates_per_step`` dates of that many nodes (static shapes)."""
    steps = step_shares(date_order(len(dataset), seed), dates_per_step(cfg), ranks)
    if resident is None:
        return make_loader(dataset, cfg, steps)
    shape = None if nodes is None else (dates_per_step(cfg), nodes)
    return (resident.batch(dataset.date_indices[s], shape) for s in steps)


def finite(t: torch.Tensor) -> torch.Tensor:
    """Whether ``t`` has no NaN or inf, as a 0-dim bool tensor on its device (nothing read back):
    its min and max are finite (aminmax propagates NaN). One reduction, 30x faster on the CPU
    than isfinite(t).all(), which writes a bool per element first."""
    if t.numel() == 0:
        return torch.ones((), dtype=torch.bool, device=t.device)
    lo, hi = torch.aminmax(t)
    return torch.isfinite(lo) & torch.isfinite(hi)


def finite_batch(batch: Batch) -> torch.Tensor:
    """Whether the batch's inputs are all finite, as a 0-dim bool tensor on their device."""
    return finite(batch.x) & finite(batch.market) & finite(batch.edge_attr)


def autocast(device: torch.device, cfg: TrainConfig, cache: bool = True):
    """bf16 autocast in optimized mode on CUDA. ``cache=False`` for a step captured in a CUDA
    graph: autocast's cache of cast weights lives only as long as its context."""
    enabled = device.type == "cuda" and cfg.mode == "optimized"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled, cache_enabled=cache)
