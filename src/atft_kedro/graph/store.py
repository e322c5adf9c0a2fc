"""GraphSet: every date's graph in five flat arrays, readable one date at a time."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

_ARRAYS = ("dates", "offsets", "codes", "neighbors", "edge_attr")  # one .npy file each


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
        return (GraphSet.open, (self.root,)) if self.root is not None else super().__reduce__()

    def save(self, root: str | Path) -> None:
        """Write the arrays as .npy files and ``meta.json`` into the folder ``root``."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(root / f"{name}.npy", np.ascontiguousarray(getattr(self, name)), allow_pickle=False)
        meta = {"config": self.config, "n_dates": len(self), "n_nodes": int(self.offsets[-1]), "data_fingerprint": self.data_fingerprint}
        (root / "meta.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def open(cls, root: str | Path) -> "GraphSet":
        """The set saved in ``root``, its large arrays memory-mapped: one date's graph reads only its rows."""
        path = Path(root)
        meta = json.loads((path / "meta.json").read_text())
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
        arrays["dates"] = np.asarray(arrays["dates"]).astype("datetime64[D]")
        arrays["offsets"] = np.asarray(arrays["offsets"])
        return cls(**arrays, config=meta["config"], root=str(root), data_fingerprint=meta.get("data_fingerprint"))

    def __len__(self) -> int:
        return len(self.dates)

    def index_of(self, date) -> int:
        d = np.datetime64(date, "D")
        i = int(np.searchsorted(self.dates, d))
        if i >= len(self.dates) or self.dates[i] != d:
            raise KeyError(f"no graph for {d}; graphs cover {self.dates[0]} .. {self.dates[-1]}" if len(self) else "the graph set is empty")
        return i

    def rows_of(self, date) -> tuple[int, int]:
        """(first, end) row of one date's nodes in the flat arrays."""
        i = self.index_of(date)
        return int(self.offsets[i]), int(self.offsets[i + 1])

    def graph(self, date) -> DateGraph:
        """One date's graph as tensors; with memory-mapped arrays only its rows are read."""
        lo, hi = self.rows_of(date)
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
