"""Does phase 2 (the GAT) gain from a graph? Phase 2 per graph, from one phase-1 checkpoint.

    python tests/benchmarks/bench_graph_phase2.py --seed 0
    python tests/benchmarks/bench_graph_phase2.py --seed 0 --overrides '{"cross_sector_clusters": true}'

Builds the synthetic market (default, or with ``SyntheticConfig`` overrides) with the project's
data and training parameters (conf/base), trains phases 0 and 1 once, then phase 2 once per graph
configuration in ``--graphs`` (name -> GraphConfig fields; default: the default graph and
market-relative returns over 250 days), each from a copy of the same phase-1 checkpoint, and
prints every epoch's validation RankIC (1d). Phase 2 above phase 1 with one graph and not another
says the GAT uses what that graph carries. ``--control`` adds, for each graph, the same graph with
its edges pointed at random stocks of the date (``random_endpoints``: same degrees and edge
attributes, no information in who the neighbours are): phase 2 on it is what the extra epochs and
the GAT's own parameters give without the graph. ``--true-leaders`` adds the graph that holds all
of the planted lead-lag (each stock's neighbours: its cluster's leaders, from the simulator's labels;
a diagnostic, never a model input). One seed per process (one per core).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from bench_phases import _params

GRAPHS = {"default": {}, "relative, W=250": {"returns": "relative", "window": 250}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overrides", default="{}", help="SyntheticConfig fields as JSON")
    parser.add_argument("--graphs", default=json.dumps(GRAPHS), help="JSON: name -> GraphConfig fields")
    parser.add_argument("--control", action="store_true", help="also each graph with its edges pointed at random stocks")
    parser.add_argument("--true-leaders", action="store_true", help="also the graph of each stock's true cluster leaders (a diagnostic)")
    args = parser.parse_args()

    from atft_kedro.data.sources import SourceConfig, load_market
    from atft_kedro.features.prepare import prepare_model_data
    from atft_kedro.features.splits import SplitConfig
    from atft_kedro.graph.correlation import GraphConfig, build_graphs
    from atft_kedro.training.checkpoints import CheckpointStore
    from atft_kedro.training.data import build_arrays, split_indices
    from atft_kedro.training.loop import TrainConfig, train_phase

    de = _params("data_engineering")
    source = SourceConfig(**{**de["raw"], "synthetic_overrides": json.loads(args.overrides)})
    market, oracle = load_market("synthetic", source)
    data = prepare_model_data(market.daily_quotes, market.listed_info, market.topix, SplitConfig(**de["splits"]))
    arrays = build_arrays(data.model_input, data.market_context, data.feature_names)
    train, val = split_indices(arrays, data.splits, "train"), split_indices(arrays, data.splits, "val")
    cfg = TrainConfig(**{**_params("training")["training"], "seed": args.seed})
    default = GraphConfig(**_params("graph_construction")["graph"])
    graphs = {name: build_graphs(data.panel, GraphConfig(**{**vars(default), **fields}), progress=False)
              for name, fields in json.loads(args.graphs).items()}  # fmt: skip
    if args.true_leaders:
        graphs["true leaders"] = true_leader_graphs(next(iter(graphs.values())), oracle)
    if args.control:
        graphs.update({f"{name}, random endpoints": random_endpoints(g, seed=args.seed) for name, g in list(graphs.items())})

    def run(phase, store, graph):
        history = train_phase(phase, arrays, graph, train, val, cfg, store, data.manifest, progress=False)
        return [round(row["val_rank_ic_1d"], 4) for row in history]

    out = {"seed": args.seed, "overrides": json.loads(args.overrides)}
    with tempfile.TemporaryDirectory() as base:
        store = CheckpointStore(base)
        first = next(iter(graphs.values()))  # phases 0 and 1 do not read the graph
        for phase in (0, 1):
            out[f"phase {phase}"] = run(phase, store, first)
            print(f"phase {phase}", out[f"phase {phase}"], flush=True)
        for name, graph in graphs.items():
            with tempfile.TemporaryDirectory() as tmp:
                shutil.copytree(store.path(1, "best").parent, Path(tmp) / "phase1")
                out[f"phase 2, {name}"] = run(2, CheckpointStore(tmp), graph)
            print(f"phase 2, {name}", out[f"phase 2, {name}"], flush=True)
    print(json.dumps(out))


def _date_rows(graphs):
    """(first, end) row of each date's nodes in the graph set's flat arrays."""
    return ((int(graphs.offsets[i]), int(graphs.offsets[i + 1])) for i in range(len(graphs)))


def true_leader_graphs(graphs, oracle):
    """The dates and stocks of ``graphs``, each stock's neighbours its planted cluster's leaders
    (itself excluded, -1 padded to the same k), edge attributes 0: all of the lead-lag, nothing else."""
    from atft_kedro.graph.quality import planted_clusters, true_leader_neighbours

    codes = np.asarray(graphs.codes).astype(str)
    cluster, leader = planted_clusters(oracle, codes)
    neighbors = np.full(np.shape(graphs.neighbors), -1, dtype=np.asarray(graphs.neighbors).dtype)
    for lo, hi in _date_rows(graphs):
        neighbors[lo:hi] = true_leader_neighbours(cluster[lo:hi], leader[lo:hi], neighbors.shape[1])
    return dataclasses.replace(graphs, neighbors=neighbors, edge_attr=np.zeros_like(np.asarray(graphs.edge_attr)), root=None)


def random_endpoints(graphs, seed: int):
    """The same graphs with every edge's source replaced through a random permutation of the date's
    stocks (a self-edge moves to the next stock): each stock keeps its number of edges and their
    attributes, but whom it listens to carries no information."""
    rng = np.random.default_rng(seed)
    neighbors = np.array(graphs.neighbors)
    for lo, hi in _date_rows(graphs):
        block, n = neighbors[lo:hi], hi - lo
        perm = rng.permutation(n).astype(block.dtype)
        valid = block >= 0
        block[valid] = perm[block[valid]]
        rows = np.broadcast_to(np.arange(n, dtype=block.dtype)[:, None], block.shape)
        self_edge = valid & (block == rows)
        block[self_edge] = (block[self_edge] + 1) % n
    return dataclasses.replace(graphs, neighbors=neighbors, root=None)


if __name__ == "__main__":
    main()
