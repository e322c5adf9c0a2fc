"""The graph build of this tree against the one of an earlier revision, alternating, on one grid.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        python tests/benchmarks/bench_graph_against.py --rev a7af0b8 --size full --repeats 3 \\
        --grid-cache /tmp/full_grid.pkl [--threads 1 --dates 600:800]

The earlier revision's ``atft_kedro/graph/correlation.py`` is read from git into a temporary module
(the rest of the package is this tree's), so both builders see the same return grid and the same
graph parameters (conf/base). Each repeat times one build of each, old first; the machine's noise
shows as the spread over repeats. Prints the seconds, whether the two builds' neighbours and the
edge attributes both build are identical (a later revision may add attributes after them), and
each shared attribute's largest difference. The synthetic market's return grid is built once and, with
``--grid-cache``, kept in that file for the next run.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MODULE = "src/atft_kedro/graph/correlation.py"


def load_grid(size: str, cache: str | None):
    if cache and Path(cache).exists():
        with open(cache, "rb") as f:
            return pickle.load(f)
    from atft_kedro.data.synthetic import SyntheticConfig, generate_market
    from atft_kedro.features.panel import build_panel
    from atft_kedro.graph.correlation import return_grid

    market = generate_market(SyntheticConfig.sized(size))
    grid = return_grid(build_panel(market.daily_quotes, market.listed_info))
    if cache:
        with open(cache, "wb") as f:
            pickle.dump(grid, f)
    return grid


def module_at(rev: str, folder: str):
    """``correlation.py`` as it was at ``rev``, imported as a module of its own."""
    root = Path(__file__).resolve().parents[2]
    source = subprocess.run(["git", "show", f"{rev}:{MODULE}"], cwd=root, check=True, capture_output=True, text=True).stdout
    path = Path(folder) / "correlation_at_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("correlation_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rev", required=True, help="the earlier revision (a git commit)")
    parser.add_argument("--size", default="full")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grid-cache", default=None, help="a pickle of the return grid (written if absent)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--dates", default=None, help="a slice of the grid's dates, e.g. 600:800 (default: all)")
    args = parser.parse_args()

    from atft_kedro.graph import correlation as new
    from atft_kedro.pipelines.in_memory import project_parameters

    if args.threads:
        torch.set_num_threads(args.threads)
    grid = load_grid(args.size, args.grid_cache)
    dates = None if args.dates is None else grid.dates[slice(*(int(x) if x else None for x in args.dates.split(":")))]
    params = project_parameters()["graph"]
    seconds, built = {"old": [], "new": []}, {}
    with tempfile.TemporaryDirectory() as folder:
        old = module_at(args.rev, folder)
        configs = {}  # an earlier revision may lack newer options: each gets the ones it has
        for module in (old, new):
            known = {f.name for f in dataclasses.fields(module.GraphConfig)}
            configs[module] = module.GraphConfig(**{k: v for k, v in params.items() if k in known})
        for _ in range(args.repeats):
            for name, module in (("old", old), ("new", new)):
                start = time.perf_counter()
                built[name] = module.build_graphs_from_grid(grid, configs[module], dates=dates, progress=False)
                seconds[name].append(round(time.perf_counter() - start, 2))
    width = built["old"].edge_attr.shape[-1]
    shared = built["new"].edge_attr[..., :width]  # the attributes both revisions build ("identical" compares these)
    same_neighbours = bool(np.array_equal(built["old"].neighbors, built["new"].neighbors))
    print(json.dumps({
        "rev": args.rev,
        "dates": len(built["new"].dates),
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "identical": bool(same_neighbours and np.array_equal(built["old"].edge_attr, shared)),
        "neighbours_identical": same_neighbours,
        "largest_difference": {a: float(np.abs(built["old"].edge_attr[..., i] - shared[..., i]).max()) for i, a in enumerate(old.EDGE_ATTRIBUTES)},
        "attributes": {"old": old.EDGE_ATTRIBUTES, "new": new.EDGE_ATTRIBUTES},
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
