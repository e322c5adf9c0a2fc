"""GraphSet: every date's graph in five flat arrays, readable one date at a time."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class DateGraph:
    codes: np.ndarray  # [N_t] the date's stocks, in Code order
    neighbors: torch.Tensor  # [N_t, k] int64, -1 = padding
    edge_attr: torch.Tensor  # [N_t, k, E] float32: the EDGE_ATTRIBUTES of graph.correlation


@dataclass(frozen=True)
class GraphSet:
    """Nodes of date ``dates[i]`` are rows ``offsets[i]:offsets[i+1]`` of ``codes``, ``neighbors``
    (local indices into that date's rows) and ``edge_attr``. Arrays may be memory maps."""

    dates: np.ndarray  # [D] datetime64[D]
    offsets: np.ndarray  # [D+1] int64
    codes: np.ndarray  # [sum N_t] str
    neighbors: np.ndarray  # [sum N_t, k] int32
    edge_attr: np.ndarray  # [sum N_t, k, E] float32
    config: dict = field(default_factory=dict)
    root: str | None = None  # the store folder when the arrays are memory maps of it
    data_fingerprint: dict | None = None  # the data the graphs were built from (atft_kedro.provenance)

    def __reduce__(self):
        # pickled into DataLoader workers: reopen the memory maps there instead of copying arrays
        if self.root is not None:
            from atft_kedro.datasets.graph_store import open_graph_store

            return open_graph_store, (self.root,)
        return super().__reduce__()

    def __len__(self) -> int:
        return len(self.dates)

    def index_of(self, date) -> int:
        d = np.datetime64(date, "D")
        i = int(np.searchsorted(self.dates, d))
        if i >= len(self.dates) or self.dates[i] != d:
            raise KeyError(f"no graph for {d}; graphs cover {self.dates[0]} .. {self.dates[-1]}" if len(self) else "the graph set is empty")
        return i

    def graph(self, date) -> DateGraph:
        """One date's graph as tensors; with memory-mapped arrays only its rows are read."""
        i = self.index_of(date)
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return DateGraph(
            codes=np.asarray(self.codes[lo:hi]),
            neighbors=torch.from_numpy(np.asarray(self.neighbors[lo:hi], dtype=np.int64)),
            edge_attr=torch.from_numpy(np.array(self.edge_attr[lo:hi], dtype=np.float32)),
        )

    def date_rows(self):
        """(first, end) row of each date's nodes in the flat arrays, in date order."""
        return ((int(self.offsets[i]), int(self.offsets[i + 1])) for i in range(len(self)))

    def with_random_endpoints(self, seed: int) -> "GraphSet":
        """The same graphs with every edge's source replaced through a random permutation of the
        date's stocks (a self-edge moves to the next stock): each stock keeps its number of edges
        and their attributes, but whom it listens to carries no information. The control that says
        what a trained model gets from its graph (evaluation's ``graph_ablation``)."""
        rng = np.random.default_rng(seed)
        neighbors = np.array(self.neighbors)
        for lo, hi in self.date_rows():
            block, n = neighbors[lo:hi], hi - lo
            perm = rng.permutation(n).astype(block.dtype)
            valid = block >= 0
            block[valid] = perm[block[valid]]
            rows = np.broadcast_to(np.arange(n, dtype=block.dtype)[:, None], block.shape)
            self_edge = valid & (block == rows)
            block[self_edge] = (block[self_edge] + 1) % n
        return dataclasses.replace(self, neighbors=neighbors, root=None)
