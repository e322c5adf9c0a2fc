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
