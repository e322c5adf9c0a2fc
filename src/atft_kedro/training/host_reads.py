"""Counting what makes the host wait for the device.

A CUDA step runs ahead of the host until the host needs a value the device has not produced yet:
reading one (``item``, ``tolist``, ``bool``/``float``/``int`` of a tensor; ``numpy`` or a copy to
the CPU of a device tensor) or running an op whose output size depends on the data (``unique``, ``nonzero``,
``masked_select``, ``bincount``, indexing with a boolean mask). ``HostReads`` counts those calls in a block of
code through torch's function-mode hook, on any device: on a CPU nothing waits, but the count is
what a CUDA run of the same code would wait for (the training benchmark reports it per step).
Calls inside a torch.library custom op (the fused GAT op) run behind the dispatcher and are not
seen; the kernel tests check the op's own device-side pieces (its reverse graph) directly.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__"}
COPIES = {"numpy", "cpu"}  # counted when the tensor is not on the CPU already
DATA_SIZED = {"unique", "unique_consecutive", "nonzero", "masked_select", "argwhere", "nonzero_static", "bincount"}


def _boolean_index(args) -> bool:
    index = args[1] if len(args) > 1 else None
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


class HostReads(TorchFunctionMode):
    """``with HostReads() as reads: ...`` then ``reads.total`` and ``reads.calls`` (name -> count)."""

    def __init__(self):
        super().__init__()
        self.calls: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        on_device = bool(args) and isinstance(args[0], torch.Tensor) and args[0].device.type != "cpu"
        if name in READS or name in DATA_SIZED:
            self.calls[name] += 1
        elif name in ("__getitem__", "__setitem__") and _boolean_index(args):
            self.calls[f"{name}[bool]"] += 1
        elif on_device and (name in COPIES or (name == "to" and any(str(a) == "cpu" for a in (*args[1:], *(kwargs or {}).values())))):
            self.calls[f"{name}(cpu)"] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@contextmanager
def reads_per_epoch():
    """Counts the host reads of every training epoch run inside the block (``HostReads`` around
    the loop's epoch function); yields {steps the epoch took: its HostReads}. For the training
    benchmark and the test that pins a step's reads."""
    from atft_kedro.training import loop

    one_epoch, counted = loop._one_epoch, {}

    def counting(*args, **kw):
        with HostReads() as reads:
            result = one_epoch(*args, **kw)
        counted[result[1]] = reads
        return result

    loop._one_epoch = counting
    try:
        yield counted
    finally:
        loop._one_epoch = one_epoch
