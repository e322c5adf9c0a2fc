"""GraphStoreDataset: a GraphSet on disk as a folder of .npy arrays, loaded as memory maps."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from kedro.io import AbstractDataset

from atft_kedro.graph.store import GraphSet

_ARRAYS = ("dates", "offsets", "codes", "neighbors", "edge_attr")


class GraphStoreDataset(AbstractDataset[GraphSet, GraphSet]):
    """Every date's stock graph in one folder; loading maps the arrays, so reading one date's
    graph (``GraphSet.graph(date)``) touches only that date's rows.

    Example catalog entry:

    .. code-block:: yaml

        graphs:
          type: atft_kedro.datasets.GraphStoreDataset
          filepath: data/05_model_input/graphs

    Saving writes into a temporary folder beside the target and renames it into place, so an
    interrupted save never leaves a half-written store behind.
    """

    def __init__(self, *, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return (Path(self._filepath) / "meta.json").exists()

    def load(self) -> GraphSet:
        root = Path(self._filepath)
        meta = json.loads((root / "meta.json").read_text())
        arrays = {name: np.load(root / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
        arrays["dates"] = np.asarray(arrays["dates"]).astype("datetime64[D]")
        arrays["offsets"] = np.asarray(arrays["offsets"])
        return GraphSet(**arrays, config=meta["config"])

    def save(self, data: GraphSet) -> None:
        root = Path(self._filepath)
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
        try:
            for name in _ARRAYS:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(data, name)), allow_pickle=False)
            meta = {"config": data.config, "n_dates": len(data), "n_nodes": int(data.offsets[-1])}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            if root.exists():
                shutil.rmtree(root)
            tmp.rename(root)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
