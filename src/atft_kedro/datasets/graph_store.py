"""GraphStoreDataset: a GraphSet on disk as a folder of .npy arrays, loaded as memory maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from atft_kedro.atomic import atomic_folder, restore_interrupted
from atft_kedro.datasets._base import PathDataset
from atft_kedro.graph.store import GraphSet

_ARRAYS = ("dates", "offsets", "codes", "neighbors", "edge_attr")


def open_graph_store(root: str) -> GraphSet:
    path = Path(root)
    meta = json.loads((path / "meta.json").read_text())
    arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
    arrays["dates"] = np.asarray(arrays["dates"]).astype("datetime64[D]")
    arrays["offsets"] = np.asarray(arrays["offsets"])
    return GraphSet(**arrays, config=meta["config"], root=root, data_fingerprint=meta.get("data_fingerprint"))


class GraphStoreDataset(PathDataset):
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

    def _exists(self) -> bool:
        restore_interrupted(Path(self._filepath))
        return (Path(self._filepath) / "meta.json").exists()

    def load(self) -> GraphSet:
        restore_interrupted(Path(self._filepath))
        return open_graph_store(str(self._filepath))

    def save(self, data: GraphSet) -> None:
        with atomic_folder(Path(self._filepath)) as tmp:
            for name in _ARRAYS:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(data, name)), allow_pickle=False)
            meta = {"config": data.config, "n_dates": len(data), "n_nodes": int(data.offsets[-1]),
                    "data_fingerprint": data.data_fingerprint}  # fmt: skip
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
