"""Validation RankIC per training phase over several seeds, and test RankIC against the oracle.

    python tests/benchmarks/bench_phases.py --seeds 0 1 2 --out phases.json
    python tests/benchmarks/bench_phases.py --report phases_s0.json phases_s1.json ...

Runs phases 0..3 (``--phases``) one after another, as ``kedro run --params phase=all`` does, with
the project's default parameters (conf/base) on the default synthetic market, once per seed (the
seed sets the initial weights and the order of the training dates). Per seed and phase it records
the best validation metric (1-day RankIC); for the last phase's best checkpoint also the validation
and test RankIC at every horizon it predicts, and the oracle's test RankIC (1d) on the same dates.
Seeds can run in separate processes (one per core) and be merged with ``--report``. ``--overrides``
takes training parameters as JSON (model fields merged into the defaults), e.g.
``--overrides '{"model": {"linear_skip": [1]}}'``.

Every RankIC of the last phase's best checkpoint is also measured against *neutral* targets (each
date's sector means and beta-explained part out, ``features.targets.neutralise_targets``): what
it knows about stocks within their sector, without bets on the market or sectors.
``--train-targets neutral`` trains (and early-stops) on those neutral targets instead of the raw ones.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _params(name: str) -> dict:
    return yaml.safe_load((ROOT / "conf" / "base" / f"parameters_{name}.yml").read_text())


def run(seeds: list[int], phases: list[int], overrides: dict | None = None, train_targets: str = "raw") -> list[dict]:
    import torch

    from atft_kedro.data.sources import SourceConfig, load_market
    from atft_kedro.features.prepare import prepare_model_data
    from atft_kedro.features.splits import SplitConfig
    from atft_kedro.features.targets import neutralise_targets, target_columns
    from atft_kedro.graph.correlation import GraphConfig, build_graphs
    from atft_kedro.pipelines.training.nodes import build_training_arrays
    from atft_kedro.training.checkpoints import CheckpointStore
    from atft_kedro.training.data import HORIZON_KEYS, DateDataset, split_indices
    from atft_kedro.training.loop import TrainConfig, build_model, daily_rank_ic, predict, train_phase

    de = _params("data_engineering")
    market, oracle = load_market("synthetic", SourceConfig(**de["raw"]))
    data = prepare_model_data(market.daily_quotes, market.listed_info, market.topix, SplitConfig(**de["splits"]))
    model_input = data.model_input.join(data.panel.select("Date", "Code", "Sector33Code"), on=["Date", "Code"], how="left")  # as the pipeline's
    arrays = build_training_arrays(model_input, data.market_context, data.manifest, {"targets": train_targets})
    targets = target_columns()
    realised = {  # the targets each RankIC is scored against, in the arrays' float32
        "": model_input.select("Date", "Code", *[pl.col(t).cast(pl.Float32) for t in targets]),
        "_neutral": neutralise_targets(model_input).select("Date", "Code", *[pl.col(t).cast(pl.Float32) for t in targets]),
    }
    graphs = build_graphs(data.panel, GraphConfig(**_params("graph_construction")["graph"]), progress=False)
    train_idx, val_idx, test_idx = (split_indices(arrays, data.splits, s) for s in ("train", "val", "test"))
    test_dates = arrays.dates[test_idx]
    scored = (
        data.model_input.select("Date", "Code", "target_1d")
        .join(oracle.select("Date", "Code", "expected_return_1d"), on=["Date", "Code"])
        .filter(pl.col("Date").is_in(pl.Series(test_dates).cast(pl.Date).implode()))
        .rename({"expected_return_1d": "pred_1d"})
    )
    oracle_test = daily_rank_ic(scored, ["1d"], 20)["1d"]

    base = _params("training")["training"]
    model_params = {**base.get("model", {}), **(overrides or {}).get("model", {})}
    rows = []
    for seed in seeds:
        cfg = TrainConfig(**{**base, **(overrides or {}), "model": model_params, "seed": seed})
        with tempfile.TemporaryDirectory() as tmp:
            store = CheckpointStore(tmp)
            row = {"seed": seed, "oracle_test_rank_ic_1d": oracle_test, "train_targets": train_targets}
            for phase in phases:
                t0 = time.perf_counter()
                train_phase(phase, arrays, graphs, train_idx, val_idx, cfg, store, data.manifest, progress=False)
                best = store.load(phase, "best")
                row[f"phase{phase}_val"] = best["best"]
                row[f"phase{phase}_seconds"] = round(time.perf_counter() - t0, 1)
                print(f"seed {seed} phase {phase}: best validation RankIC {best['best']:.4f}", flush=True)
            model = build_model(arrays, cfg, phases[-1], torch.device("cpu"))
            model.load_state_dict(best["model"])
            for split, idx in (("val", val_idx), ("test", test_idx)):  # the last phase's best, every horizon
                preds = predict(model, DateDataset(arrays, graphs, idx, cfg.window), cfg, torch.device("cpu")).drop(targets)
                horizons = [h for h in HORIZON_KEYS if f"pred_{h}" in preds.columns]
                for name, frame in realised.items():
                    scored_preds = preds.join(frame, on=["Date", "Code"], how="left")
                    row[f"{split}_rank_ic{name}"] = daily_rank_ic(scored_preds, horizons, cfg.min_stocks)
            row["test_rank_ic_1d"] = row["test_rank_ic"]["1d"]
            print(f"seed {seed}: test RankIC {row['test_rank_ic_1d']:.4f} (oracle {oracle_test:.4f})", flush=True)
            rows.append(row)
    return rows


def report(rows: list[dict]) -> str:
    phases = sorted({int(k[5]) for r in rows for k in r if k.startswith("phase") and k.endswith("_val")})
    lines = ["| phase | " + " | ".join(f"seed {r['seed']}" for r in rows) + " | mean | spread (max-min) |",
             "|---|" + "---|" * (len(rows) + 2)]  # fmt: skip
    for p in phases:
        v = np.array([r[f"phase{p}_val"] for r in rows])
        lines.append(f"| {p} | " + " | ".join(f"{x:.4f}" for x in v) + f" | {v.mean():.4f} | {v.max() - v.min():.4f} |")
    t = np.array([r["test_rank_ic_1d"] for r in rows])
    o = rows[0]["oracle_test_rank_ic_1d"]
    lines.append(f"\ntest RankIC (1d) of the last phase: {', '.join(f'{x:.4f}' for x in t)} (mean {t.mean():.4f}); "
                 f"oracle {o:.4f}; mean / oracle = {t.mean() / o:.0%}")  # fmt: skip
    if all("test_rank_ic" in r for r in rows):  # every horizon, the last phase's best checkpoint
        for suffix, split in ((s, p) for s in ("", "_neutral") for p in ("val", "test")):
            key = f"{split}_rank_ic{suffix}"
            if key not in rows[0]:
                continue
            per = {h: np.array([r[key][h] for r in rows]) for h in rows[0][key]}
            lines.append(f"{split}{suffix} RankIC per horizon, seeds in order (mean): "
                         + "; ".join(f"{h} {', '.join(f'{x:.4f}' for x in v)} ({v.mean():.4f})" for h, v in per.items()))  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--phases", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--out", default=None)
    parser.add_argument("--overrides", default="{}", help="training parameters as JSON, e.g. '{\"model\": {\"dropout\": 0.2}}'")
    parser.add_argument("--train-targets", choices=["raw", "neutral"], default="raw",
                        help="train and early-stop on raw targets or on targets without sector means and beta")
    parser.add_argument("--report", nargs="+", default=None, help="merge these JSON files into one table")
    args = parser.parse_args()
    if args.report:
        rows = [r for f in args.report for r in json.loads(Path(f).read_text())]
    else:
        rows = run(args.seeds, args.phases, json.loads(args.overrides), args.train_targets)
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=1))
    print(report(sorted(rows, key=lambda r: r["seed"])))


if __name__ == "__main__":
    main()
