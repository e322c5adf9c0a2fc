"""Does phase 2 (the GAT) gain from a graph? Phase 2 per graph, from one phase-1 checkpoint.

    python experiments/graph_phase2.py --seed 0
    python experiments/graph_phase2.py --seed 0 --control --params '{"raw": {"synthetic_market": "random_leaders"}}'

Builds the synthetic market with the project's parameters (conf/base, with ``--params`` merged in),
trains phases 0 and 1 once, then phase 2 once per graph configuration in ``--graphs`` (name ->
GraphConfig fields merged into the default graph's; default: the default graph alone), each from a
copy of the same phase-1 checkpoint, and prints every epoch's validation RankIC (1d) and the best
checkpoint's RankIC (1d) on validation and test. Phase 2 above phase 1 with one graph and not
another says the model uses what that graph carries. ``--control`` adds, for each graph, the same
graph with its edges pointed at random stocks of the date (``GraphSet.with_random_endpoints``: same
degrees and edge attributes, no information in who the neighbours are): phase 2 on it is what the
extra epochs and the graph parts' own parameters give without the graph. ``--true-leaders`` adds
the graph that holds all of the planted lead-lag (each stock's neighbours: its cluster's leaders,
from the simulator's labels; a diagnostic, never a model input). One seed per process (one per core).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

GRAPHS = {"default": {}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON (e.g. the market: raw.synthetic_market)")
    parser.add_argument("--graphs", default=json.dumps(GRAPHS), help="JSON: name -> GraphConfig fields")
    parser.add_argument("--control", action="store_true", help="also each graph with its edges pointed at random stocks")
    parser.add_argument("--true-leaders", action="store_true", help="also the graph of each stock's true cluster leaders (a diagnostic)")
    args = parser.parse_args()

    from atft_kedro.graph.correlation import GraphConfig, build_graphs
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory
    from atft_kedro.pipelines.training.nodes import build_training_arrays
    import torch

    from atft_kedro.training.checkpoints import CheckpointStore, model_from_checkpoint
    from atft_kedro.training.data import DateDataset, split_indices
    from atft_kedro.training.config import TrainConfig
    from atft_kedro.training.loop import train_phase
    from atft_kedro.training.predict import daily_rank_ic, predict

    params = project_parameters(json.loads(args.params))
    data = run_in_memory(["data_engineering"], params)
    oracle, manifest = data["oracle_returns"], data["feature_manifest"]
    arrays = build_training_arrays(data["model_input"], data["market_context"], manifest, params["training"])
    train, val, test = (split_indices(arrays, data["splits"], s) for s in ("train", "val", "test"))
    cfg = TrainConfig(**{**params["training"], "seed": args.seed})
    graphs = {name: build_graphs(data["panel"], GraphConfig(**{**params["graph"], **fields}), progress=False)
              for name, fields in json.loads(args.graphs).items()}  # fmt: skip
    if args.true_leaders:
        graphs["true leaders"] = true_leader_graphs(next(iter(graphs.values())), oracle)
    if args.control:
        graphs.update({f"{name}, random endpoints": g.with_random_endpoints(args.seed) for name, g in list(graphs.items())})

    def run(phase, store, graph):
        history = train_phase(phase, arrays, graph, train, val, cfg, store, manifest, progress=False)
        return [round(row["val_rank_ic_1d"], 4) for row in history]

    def scores(store, graph) -> dict:
        """The phase-2 best checkpoint's RankIC (1d) on validation and test, on ``graph``."""
        net = model_from_checkpoint(store.load(2, "best"), backend="torch")
        return {split: round(daily_rank_ic(predict(net, DateDataset(arrays, graph, idx, cfg.window), cfg, torch.device("cpu")), ["1d"], cfg.min_stocks)["1d"], 4)
                for split, idx in (("val", val), ("test", test))}  # fmt: skip

    out = {"seed": args.seed, "params": json.loads(args.params)}
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
                out[f"phase 2, {name}, best"] = scores(CheckpointStore(tmp), graph)
            print(f"phase 2, {name}", out[f"phase 2, {name}"], "best:", out[f"phase 2, {name}, best"], flush=True)
    print(json.dumps(out))


def true_leader_graphs(graphs, oracle):
    """The dates and stocks of ``graphs``, each stock's neighbours its planted cluster's leaders
    (itself excluded, -1 padded to the same k), edge attributes 0: all of the lead-lag, nothing else."""
    from atft_kedro.graph.quality import planted_clusters, true_leader_neighbours

    codes = np.asarray(graphs.codes).astype(str)
    cluster, leader = planted_clusters(oracle, codes)
    neighbors = np.full(np.shape(graphs.neighbors), -1, dtype=np.asarray(graphs.neighbors).dtype)
    for lo, hi in graphs.date_rows():
        neighbors[lo:hi] = true_leader_neighbours(cluster[lo:hi], leader[lo:hi], neighbors.shape[1])
    return dataclasses.replace(graphs, neighbors=neighbors, edge_attr=np.zeros_like(np.asarray(graphs.edge_attr)), root=None)


if __name__ == "__main__":
    main()
