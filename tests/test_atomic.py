"""Atomic saves: an interrupted save leaves the previous artifact, never neither."""

from pathlib import Path

import pytest

from atft_kedro.atomic import atomic_folder, restore_interrupted


def _write(root: Path, text: str) -> None:
    with atomic_folder(root) as tmp:
        (tmp / "data.txt").write_text(text)


def test_a_save_replaces_the_folder_and_leaves_nothing_beside_it(tmp_path):
    _write(tmp_path / "store", "one")
    _write(tmp_path / "store", "two")
    assert (tmp_path / "store/data.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


def test_a_save_that_fails_while_writing_keeps_the_previous_folder(tmp_path):
    _write(tmp_path / "store", "one")
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "store") as tmp:
        (tmp / "data.txt").write_text("half")
        raise RuntimeError("killed")
    assert (tmp_path / "store/data.txt").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


def test_a_kill_between_the_two_renames_keeps_the_previous_folder(tmp_path, monkeypatch):
    root = tmp_path / "store"
    _write(root, "one")
    real_rename = Path.rename

    def rename(self, target):
        if self.name.endswith(".new"):  # the new folder's move into place: the process dies first
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        _write(root, "two")
    monkeypatch.undo()
    assert not root.exists()  # what a reader finds right after the kill ...
    restore_interrupted(root)  # ... and what every reader does first
    assert (root / "data.txt").read_text() == "one"
    _write(root, "three")
    assert (root / "data.txt").read_text() == "three" and [p.name for p in tmp_path.iterdir()] == ["store"]


def test_the_datasets_restore_an_interrupted_save(tmp_path, tiny_pipeline):
    from atft_kedro.datasets import GraphStoreDataset

    ds = GraphStoreDataset(filepath=str(tmp_path / "graphs"))
    graphs = tiny_pipeline["graphs"]
    ds.save(graphs)
    (tmp_path / "graphs").rename(tmp_path / ".graphs.old")  # the state a kill between the renames leaves
    assert ds.exists()
    assert len(ds.load()) == len(graphs)


def _killed_while_saving(target: Path, folder: bool) -> None:
    """A process that dies (``os._exit``: no cleanup runs, as under SIGKILL) half way through a save of ``target``."""
    import subprocess
    import sys

    save = "atomic_folder(p) as tmp: (tmp / 'data.txt').write_text('half')" if folder else "atomic_file(p) as tmp: open(tmp, 'w').write('half')"
    code = f"import os; from pathlib import Path; from atft_kedro.atomic import *\np = Path({str(target)!r})\nwith {save}; os._exit(9)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9


@pytest.mark.parametrize("folder", [True, False], ids=["folder", "file"])
def test_the_next_save_removes_what_a_killed_save_left_and_nothing_else(tmp_path, folder):
    import os
    import re
    import socket

    from atft_kedro.atomic import atomic_file

    target = tmp_path / ("store" if folder else "model.pt")
    _killed_while_saving(target, folder)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".{target.name}.{socket.gethostname()}-")  # the kill left its temporary
    suffix, dead = (".new" if folder else ".tmp"), re.search(r"-(\d+)\.[^.]+\.\w+$", left[0])[1]  # the killed process's id
    others = [f".{target.name}.elsewhere-{dead}.abc{suffix}",  # another host's
              f".{target.name}.{socket.gethostname()}-{os.getpid()}.abc{suffix}",  # a running process's
              f".{target.name}x.{socket.gethostname()}-{dead}.abc{suffix}", "notes.txt"]  # another target's; a file of the user's  # fmt: skip
    for name in others:
        (tmp_path / name).write_text("keep")
    if folder:
        _write(target, "whole")
    else:
        with atomic_file(target) as tmp:
            Path(tmp).write_text("whole")
    assert target.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, *others])


KILL_MID_WRITE = """
import os, sys
import fsspec.implementations.local as local
from atft_kedro import datasets
import polars as pl

def write(self, data):  # the process dies half way through writing the file (no cleanup runs, as under SIGKILL)
    self.f.write(data[: len(data) // 2])
    self.f.flush()
    os._exit(9)

local.LocalFileOpener.write = write
kind, path, value = sys.argv[1:]
ds = {"parquet": lambda: datasets.AtomicPolarsDataset(filepath=path, file_format="parquet"),
      "lazy": lambda: datasets.AtomicLazyPolarsDataset(filepath=path, file_format="parquet"),
      "json": lambda: datasets.AtomicJSONDataset(filepath=path), "text": lambda: datasets.AtomicTextDataset(filepath=path)}[kind]()
ds.save({"parquet": pl.DataFrame({"x": [value] * 1000}), "lazy": pl.DataFrame({"x": [value] * 1000}), "json": {"x": [value] * 1000},
         "text": value * 1000}[kind])
"""


@pytest.mark.parametrize("kind", ["parquet", "lazy", "json", "text"])
def test_a_run_killed_while_saving_a_catalog_file_leaves_the_previous_file(tmp_path, kind):
    import subprocess
    import sys

    import polars as pl

    from atft_kedro import datasets

    path = str(tmp_path / f"artifact.{kind}")
    ds = {"parquet": lambda: datasets.AtomicPolarsDataset(filepath=path, file_format="parquet"),
          "lazy": lambda: datasets.AtomicLazyPolarsDataset(filepath=path, file_format="parquet"),
          "json": lambda: datasets.AtomicJSONDataset(filepath=path), "text": lambda: datasets.AtomicTextDataset(filepath=path)}[kind]()  # fmt: skip
    before = {"parquet": pl.DataFrame({"x": ["old"] * 1000}), "lazy": pl.DataFrame({"x": ["old"] * 1000}), "json": {"x": ["old"] * 1000},
              "text": "old" * 1000}[kind]  # fmt: skip
    ds.save(before)
    assert subprocess.run([sys.executable, "-c", KILL_MID_WRITE, kind, path, "new"]).returncode == 9
    loaded = ds.load()
    if kind == "lazy":
        assert isinstance(loaded, pl.LazyFrame)
        loaded = loaded.collect()
    assert loaded.equals(before) if kind in ("parquet", "lazy") else loaded == before
    ds.save(before)  # the next save removes the killed one's temporary
    assert [p.name for p in tmp_path.iterdir()] == [f"artifact.{kind}"]


def test_every_file_the_catalog_saves_is_saved_atomically():
    """Plots aside (drawn again by every run, read by no node), each catalog entry that writes a
    file uses one of the project's datasets, whose saves are atomic."""
    import yaml

    catalog = yaml.safe_load((Path(__file__).parents[1] / "conf/base/catalog.yml").read_text())
    kinds = {name: (entry["dataset"]["type"] if isinstance(entry.get("dataset"), dict) else entry.get("dataset", entry["type"]))
             for name, entry in catalog.items() if not name.startswith("_")}  # fmt: skip
    assert len(kinds) > 20
    plain = {name: kind for name, kind in kinds.items() if not kind.startswith("atft_kedro.datasets.") and kind != "matplotlib.MatplotlibDataset"}
    assert plain == {}
