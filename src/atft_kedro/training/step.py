"""Optimized mode's training step with nothing read back, and its capture in a CUDA graph.

One step: forward, the losses, backward, the GAT's gradient norm, clipping, AdamW and the weight
average, all on the device. A step whose inputs or loss are not finite is skipped there too: the
fused AdamW takes a ``found_inf`` flag (the one AMP's gradient scaler sets) and then leaves the
weights, its moments and its step count as they were, and the weight average's update weight is 0.
The flags, the loss parts and the gradient norms stay on the device until the epoch ends
(``DeviceStep.finish``), when the host reads them once and names the dates of any skipped step.

With ``capture`` (CUDA, the arrays resident on the GPU), the step is recorded once a phase in a CUDA
graph and replayed: a step is then one copy of the batch into the graph's inputs and one launch,
instead of thousands of launches paced by Python. A graph needs static shapes: every batch is
``dates_per_batch`` dates of the training split's largest cross-section (``data.padded``: padding
nodes have no neighbours and no target, so no loss or gradient sees them). The first ``warmup``
steps run eagerly on a side stream, as torch's whole-network capture recipe does (the optimizer's
state, cuBLAS and cuDNN workspaces exist before recording).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from atft_kedro.training.batches import autocast, finite_batch
from atft_kedro.training.config import TrainConfig
from atft_kedro.training.data import Batch
from atft_kedro.training.losses import LossWeights, combined_loss

log = logging.getLogger(__name__)

PARTS = ("loss", "pinball", "rank_ic", "ic", "sharpe")


def forward_loss(call, b: Batch, cfg: TrainConfig, weights: LossWeights, device: torch.device, *, shards=None, cache: bool = True):
    """A training step's forward: the model (``call``, DDP-wrapped or not) on the batch ``b``, under
    optimized mode's bf16 autocast on CUDA, then the combined loss -> (loss, its parts). Shared by
    the eager steps (safe mode, torchrun) and ``DeviceStep``."""
    with autocast(device, cfg, cache=cache):
        out = call(b.x, b.market, b.date_of_node, b.neighbors, b.edge_attr)
    out = {k: v.float() for k, v in out.items()}
    return combined_loss(out, b.targets, b.date_of_node, weights, horizon_weights=cfg.horizon_weights,
                         min_stocks=cfg.min_stocks, tau=cfg.rank_tau, shards=shards, counts=b.counts)  # fmt: skip


def gat_grad_norm(model, device: torch.device) -> torch.Tensor:
    """The norm of the GAT's gradients after a backward pass, on the device (0 without any)."""
    grads = [p.grad.norm() for p in model.gat.parameters() if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.zeros((), device=device)


@dataclass
class EpochSteps:
    """What an epoch of device steps read back at its end."""

    sums: dict[str, float]  # the loss parts summed over the steps taken
    steps: int  # steps taken
    skipped: list = field(default_factory=list)  # the dates of each step skipped as non-finite
    gat_norms: list[float] = field(default_factory=list)  # the GAT's gradient norm of every step taken (GAT on)


class DeviceStep:
    """Runs optimized mode's steps of one phase (``__call__`` per batch, ``finish`` per epoch).

    ``model``: the module trained (not wrapped); ``optimizer``: a fused AdamW over its parameters
    (``capturable=True`` when capturing); ``averaged``: its ``WeightAverage`` or None."""

    def __init__(self, model, optimizer, averaged, cfg: TrainConfig, device: torch.device, *, capture: bool = False, warmup: int = 3):
        self.model, self.optimizer, self.averaged, self.cfg, self.device = model, optimizer, averaged, cfg, device
        self.weights = LossWeights(**cfg.loss_weights)
        self.capture, self.warmup = capture and device.type == "cuda", warmup
        self.sums = torch.zeros(len(PARTS), dtype=torch.float64, device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: Batch | None = None  # the graph's inputs
        self.outputs: tuple[torch.Tensor, torch.Tensor] | None = None  # the graph's (taken, GAT gradient norm)
        self.eager_steps = 0
        self._side: torch.cuda.Stream | None = None
        self._taken, self._norms, self._dates = [], [], []

    def _step(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The step itself (what a graph records) -> (taken: 0-dim bool, the GAT's gradient norm)."""
        model, cfg = self.model, self.cfg
        inputs_ok = finite_batch(b)
        loss, parts = forward_loss(model, b, cfg, self.weights, self.device, cache=not self.capture)
        taken = inputs_ok & torch.isfinite(loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = gat_grad_norm(model, self.device) if model.use_gat else torch.zeros((), device=self.device)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        self.optimizer.found_inf = (~taken).float()  # fused AdamW: a step with found_inf set changes nothing
        self.optimizer.step()
        if self.averaged is not None:
            self.averaged.update(model, taken)
        self.sums += torch.where(taken, torch.stack([loss.detach(), *parts.values()]).double(), 0.0)
        return taken, norm

    def __call__(self, b: Batch) -> None:
        """One step on a batch already on the device."""
        if self.graph is not None:
            _copy_batch(self.static, b)
            self.graph.replay()
            taken, norm = (t.clone() for t in self.outputs)  # the graph's outputs are rewritten by the next replay
        elif self.capture and self.eager_steps >= self.warmup:
            taken, norm = (t.clone() for t in self._record(b))
        else:
            taken, norm = self._eager(b)
        self._taken.append(taken)
        self._norms.append(norm)
        self._dates.append([d for d in b.dates if not np.isnat(d)])  # a padding date is NaT

    def _eager(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        self.eager_steps += 1
        if not self.capture:
            return self._step(b)
        if self._side is None:  # warm-up off the default stream, as the recording will be
            self._side = torch.cuda.Stream(self.device)
        self._side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._side):
            result = self._step(b)
        torch.cuda.current_stream(self.device).wait_stream(self._side)
        return result

    def _record(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Record the step in a CUDA graph with ``b`` as its inputs, then run it once (recording runs nothing)."""
        self.static = b.apply(torch.Tensor.clone)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.outputs = self._step(self.static)
        self.graph = graph
        log.info("training step recorded in a CUDA graph (%d dates x %d nodes)", len(b.counts), b.counts[0])
        graph.replay()
        return self.outputs

    def finish(self) -> EpochSteps:
        """The epoch's summary (the host's one read of it), and a fresh start for the next epoch."""
        taken = torch.stack(self._taken).tolist() if self._taken else []
        norms = torch.stack(self._norms).tolist() if self._norms else []
        sums = dict(zip(PARTS, self.sums.tolist()))
        skipped = [dates for dates, ok in zip(self._dates, taken) if not ok]
        result = EpochSteps(sums, sum(taken), skipped, [n for n, ok in zip(norms, taken) if ok] if self.model.use_gat else [])
        self.sums.zero_()
        self._taken, self._norms, self._dates = [], [], []
        return result


def _fields(b: Batch) -> list[torch.Tensor]:
    return [b.x, b.market, b.date_of_node, b.neighbors, b.edge_attr, *(b.targets[h] for h in sorted(b.targets))]


def _copy_batch(static: Batch, b: Batch) -> None:
    """``b`` into the graph's input tensors; its shapes must be the recorded ones."""
    if b.counts != static.counts:
        raise ValueError(f"a captured step needs batches of {len(static.counts)} dates x {static.counts[0]} nodes, got counts {b.counts}")
    for mine, theirs in zip(_fields(static), _fields(b)):
        mine.copy_(theirs, non_blocking=True)
    static.dates, static.codes = b.dates, b.codes
