"""Does phase 2 (the GAT) gain from a graph? Phase 2 per graph, from one phase-1 checkpoint.

    python tests/benchmarks/bench_graph_phase2.py --seed 0
    python tests/benchmarks/bench_graph_phase2.py --seed 0 --overrides '{"cross_sector_clusters": true}'

Builds the synthetic market (default, or with ``SyntheticConfig`` overrides) with the project's
data and training parameters (conf/base), trains phases 0 and 1 once, then phase 2 once per graph
configuration in ``--graphs`` (name -> GraphConfig fields; default: the default graph and
market-relative returns over 250 days), each from a copy of the same phase-1 checkpoint, and
prints every epoch's validation RankIC (1d). Phase 2 above phase 1 with one graph and not another
says the GAT uses what that graph carries. One seed per process (one per core).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from bench_phases import _params

GRAPHS = {"default": {}, "relative, W=250": {"returns": "relative", "window": 250}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overrides", default="{}", help="SyntheticConfig fields as JSON")
    parser.add_argument("--graphs", default=json.dumps(GRAPHS), help="JSON: name -> GraphConfig fields")
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
    market, _ = load_market("synthetic", source)
    data = prepare_model_data(market.daily_quotes, market.listed_info, market.topix, SplitConfig(**de["splits"]))
    arrays = build_arrays(data.model_input, data.market_context, data.feature_names)
    train, val = split_indices(arrays, data.splits, "train"), split_indices(arrays, data.splits, "val")
    cfg = TrainConfig(**{**_params("training")["training"], "seed": args.seed})
    default = GraphConfig(**_params("graph_construction")["graph"])
    graphs = {name: build_graphs(data.panel, GraphConfig(**{**vars(default), **fields}), progress=False)
              for name, fields in json.loads(args.graphs).items()}  # fmt: skip

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


if __name__ == "__main__":
    main()
