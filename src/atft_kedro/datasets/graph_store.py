"""GraphStoreDataset: a GraphSet on disk as a folder of .npy arrays, loaded as memory maps."""

from __future__ import annotations

from pathlib import Path

from atft_kedro.atomic import atomic_folder, restore_interrupted
from atft_kedro.datasets._base import PathDataset
from atft_kedro.graph.store import GraphSet


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
        return GraphSet.open(self._filepath)

    def save(self, data: GraphSet) -> None:
        with atomic_folder(Path(self._filepath)) as tmp:
            data.save(tmp)
