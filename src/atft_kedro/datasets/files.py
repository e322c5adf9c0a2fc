"""kedro-datasets' file datasets, their local saves atomic.

kedro-datasets writes a file in place: a run killed while it writes one (or a full disk) leaves
part of a parquet file or JSON, which the next pipeline that reads it fails on, and which only
running the pipeline that wrote it again mends. These write the file beside its path first and
move it into place (``atft_kedro.atomic.atomic_file``), so a reader finds the previous file or
the new one. Other protocols (object stores, whose uploads are whole or nothing) save as
kedro-datasets does.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from kedro.io.core import get_filepath_str
from kedro_datasets.json import JSONDataset
from kedro_datasets.polars import EagerPolarsDataset, LazyPolarsDataset
from kedro_datasets.text import TextDataset

from atft_kedro.atomic import atomic_file


class _AtomicLocalSave:
    """Points the dataset's save path at a temporary beside the file while its own ``save`` runs."""

    _saving_to: PurePosixPath | None = None

    def save(self, data) -> None:
        if self._protocol != "file":
            return super().save(data)
        with atomic_file(Path(get_filepath_str(super()._get_save_path(), self._protocol))) as tmp:
            self._saving_to = PurePosixPath(tmp)
            try:
                super().save(data)
            finally:
                self._saving_to = None

    def _get_save_path(self) -> PurePosixPath:
        return self._saving_to if self._saving_to is not None else super()._get_save_path()


class AtomicPolarsDataset(_AtomicLocalSave, EagerPolarsDataset):
    """``polars.EagerPolarsDataset`` (the same arguments), saved atomically on a local disk.

    .. code-block:: yaml

        panel:
          type: atft_kedro.datasets.AtomicPolarsDataset
          file_format: parquet
          filepath: data/03_primary/panel.parquet
    """


class AtomicLazyPolarsDataset(_AtomicLocalSave, LazyPolarsDataset):
    """``polars.LazyPolarsDataset`` (the same arguments; it loads a ``LazyFrame``, it saves a
    DataFrame or a LazyFrame), saved atomically on a local disk: for a table of which a node reads
    a few columns, so that only those are read.

    .. code-block:: yaml

        features:
          type: atft_kedro.datasets.AtomicLazyPolarsDataset
          file_format: parquet
          filepath: data/04_feature/features.parquet
    """


class AtomicJSONDataset(_AtomicLocalSave, JSONDataset):
    """``json.JSONDataset`` (the same arguments), saved atomically on a local disk."""


class AtomicTextDataset(_AtomicLocalSave, TextDataset):
    """``text.TextDataset`` (the same arguments), saved atomically on a local disk."""
