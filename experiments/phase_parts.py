"""Does a phase fall below its start because its new part learns, or because the old parts are
pulled away? One phase from a saved checkpoint of the phase before, with only some parameters trained.

    kedro run                                   # a run whose checkpoints to start from
    OMP_NUM_THREADS=1 python experiments/phase_parts.py --phase 1 --from data/06_models/checkpoints \
        --train fan,fan_select,fan_scale,heads.5d,heads.10d,heads.20d
    OMP_NUM_THREADS=1 python experiments/phase_parts.py --phase 2 --from data/06_models/checkpoints \
        --train gat,backbone,fusion_gate

Builds the market with the project's parameters (conf/base, ``--params`` merged in: the data must
be the run's, which training checks against the checkpoint's fingerprint), copies phase p - 1's best
checkpoint from ``--from`` into a temporary store, and trains phase p with every parameter whose
name starts with one of ``--train`` (all when empty) and none of ``--freeze``; the others keep the
checkpoint's values (they get no gradient, so AdamW leaves them as they are). ``--params`` sets
``training.patience`` to 4 unless given, so that every epoch runs. The log (stderr) gives the
start's validation RankIC per horizon; the last line, every epoch's. One process per core, one
thread each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase", type=int, required=True, choices=(1, 2, 3))
    parser.add_argument("--from", dest="source", required=True, help="a checkpoints folder holding phase{p-1}/best.pt")
    parser.add_argument("--train", default="", help="comma-separated parameter-name prefixes that train (empty: all)")
    parser.add_argument("--freeze", default="", help="comma-separated parameter-name prefixes that do not")
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON")
    args = parser.parse_args()

    from _log import plain_log

    plain_log()  # training's lines, plain

    from atft_kedro.graph.correlation import GraphConfig, build_graphs
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory
    from atft_kedro.pipelines.training.nodes import build_training_arrays
    from atft_kedro.training import loop
    from atft_kedro.training.checkpoints import CheckpointStore
    from atft_kedro.training.config import TrainConfig
    from atft_kedro.training.data import split_indices

    given = json.loads(args.params)
    given.setdefault("training", {}).setdefault("patience", 4)
    params = project_parameters(given)
    data = run_in_memory(["data_engineering"], params)
    manifest = data["feature_manifest"]
    arrays = build_training_arrays(data["model_input"], data["market_context"], manifest, params["training"])
    train, val = (split_indices(arrays, data["splits"], s) for s in ("train", "val"))
    cfg = TrainConfig(**params["training"])
    graphs = build_graphs(data["panel"], GraphConfig(**params["graph"]), progress=False)

    trained = [p for p in args.train.split(",") if p]
    frozen = [p for p in args.freeze.split(",") if p]
    build = loop.build_model

    def build_with_frozen_parts(*a, **kw):
        model = build(*a, **kw)
        for name, p in model.named_parameters():
            p.requires_grad_((not trained or name.startswith(tuple(trained))) and not (frozen and name.startswith(tuple(frozen))))
        print("parameters that train:", sum(p.numel() for p in model.parameters() if p.requires_grad), flush=True)
        return model

    loop.build_model = build_with_frozen_parts  # train_phase builds its model through it
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(Path(args.source) / f"phase{args.phase - 1}", Path(tmp) / f"phase{args.phase - 1}")
        store = CheckpointStore(tmp)
        history = loop.train_phase(args.phase, arrays, graphs, train, val, cfg, store, manifest, progress=False)
        best = store.load(args.phase, "best")
    keys = [k for k in history[0] if k.startswith("val_rank_ic_")] if history else []
    print(json.dumps({"args": vars(args), "best_epoch": best["epoch"],
                      "epochs": [{k.removeprefix("val_rank_ic_"): round(row[k], 4) for k in keys} for row in history]}))  # fmt: skip


if __name__ == "__main__":
    main()
