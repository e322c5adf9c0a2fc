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
