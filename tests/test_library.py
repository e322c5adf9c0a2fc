"""The library under src/atft_kedro (everything but pipelines/, datasets/, hooks and settings) and
atft_kernels work without Kedro: a DataLoader worker that unpickles a graph store or training
arrays imports neither Kedro nor its datasets."""

import pickle
import subprocess
import sys

LIBRARY = [
    "atft_kedro.atomic", "atft_kedro.provenance", "atft_kedro.data.sources", "atft_kedro.data.jquants",
    "atft_kedro.features.builders", "atft_kedro.features.normalise", "atft_kedro.graph.correlation",
    "atft_kedro.graph.quality", "atft_kedro.graph.store", "atft_kedro.model", "atft_kedro.training.loop",
    "atft_kedro.training.checkpoints", "atft_kedro.evaluation.evaluate", "atft_kedro.evaluation.report",
    "atft_kernels",
]  # fmt: skip


def _kedro_modules_after(code: str) -> list[str]:
    probe = code + "\nimport sys\nprint(sorted(m for m in sys.modules if m == 'kedro' or m.startswith(('kedro.', 'kedro_datasets', 'atft_kedro.datasets', 'atft_kedro.pipelines'))))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return eval(out.stdout.strip().splitlines()[-1])


def test_the_library_imports_without_kedro():
    assert _kedro_modules_after("\n".join(f"import {m}" for m in LIBRARY)) == []


def test_a_pickled_graph_store_reopens_without_kedro(tiny_pipeline, tmp_path):
    graphs = tiny_pipeline["graphs"]
    graphs.save(tmp_path / "graphs")
    from atft_kedro.graph.store import GraphSet

    blob = pickle.dumps(GraphSet.open(tmp_path / "graphs"))
    assert len(blob) < 1000  # the folder, not the arrays
    code = f"import pickle\ng = pickle.loads({blob!r})\nassert len(g) == {len(graphs)}"
    assert _kedro_modules_after(code) == []
