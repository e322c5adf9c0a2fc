"""Is the evaluation's LightGBM a weak bar? Its tree size chosen on validation too.

    python experiments/lightgbm_grid.py --params P [--leaves 7,15,31,63] [--min-data 50,200,800] [--horizon 1d]

The evaluation's LightGBM (``evaluation.lightgbm``) has fixed tree settings (15 leaves, at least 200
rows a leaf) and chooses only its number of trees, early-stopped on the validation RankIC. Here,
per fold, it is also fitted at every ``--leaves`` x ``--min-data`` cell (trees early-stopped the same
way, the other settings as configured), and the cell with the best validation RankIC is the pick.
Printed per fold: every cell's validation RankIC and trees, the pick; then the test split, read
once for the pick and for the evaluation's own settings: each one's test RankIC and the paired
per-date difference, pick minus the evaluation's, pooled over the folds, with its Newey-West 95%
interval. A few minutes a market on two cores.
"""

from __future__ import annotations

import argparse
import dataclasses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON (the market)")
    parser.add_argument("--leaves", default="7,15,31,63", help="num_leaves values, comma-separated")
    parser.add_argument("--min-data", default="50,200,800", help="min_data_in_leaf values, comma-separated")
    parser.add_argument("--horizon", default="1d")
    args = parser.parse_args()

    import numpy as np

    from _folds import market
    from atft_kedro.evaluation.baselines import daily_rank_ic, tuned_lightgbm
    from atft_kedro.evaluation.metrics import difference_summary, overlap_lag

    data, target = market(args.params), f"target_{args.horizon}"
    own = data.cfg.lightgbm
    cells = [(int(n), int(m)) for n in args.leaves.split(",") for m in args.min_data.split(",")]
    if (own.num_leaves, own.min_data_in_leaf) not in cells:
        cells.append((own.num_leaves, own.min_data_in_leaf))
    per_date = {"pick": [], "evaluation": []}
    for fold, dates, rows, x in data.folds(target):
        fits = {}
        for leaves, min_data in cells:
            cfg = dataclasses.replace(data.cfg, lightgbm=dataclasses.replace(own, num_leaves=leaves, min_data_in_leaf=min_data))
            fits[leaves, min_data] = tuned_lightgbm(data.model_input, data.names, target, dates["train"], dates["val"], cfg)
            booster, info = fits[leaves, min_data]
            print(f"fold {fold}: {leaves} leaves, {min_data} rows a leaf: validation RankIC {info['val_rank_ic']:.4f}, {info['trees']} trees", flush=True)
        pick = max(cells, key=lambda c: fits[c][1]["val_rank_ic"])
        mine = (own.num_leaves, own.min_data_in_leaf)
        print(f"fold {fold}: the pick {pick[0]} leaves, {pick[1]} rows a leaf (validation {fits[pick][1]['val_rank_ic']:.4f}; "
              f"the evaluation's {fits[mine][1]['val_rank_ic']:.4f})", flush=True)  # fmt: skip
        test = rows["test"]
        for name, cell in (("pick", pick), ("evaluation", mine)):
            booster = fits[cell][0]
            score = booster.predict(x["test"], num_iteration=booster.best_iteration)
            per_date[name].append(daily_rank_ic(test["Date"].to_numpy(), score, test[target].to_numpy(), data.cfg.min_stocks))
    import polars as pl

    joined = pl.concat(per_date["pick"]).join(pl.concat(per_date["evaluation"]), on="d", suffix="_evaluation")
    pick, theirs = joined["r"].to_numpy(), joined["r_evaluation"].to_numpy()
    d = difference_summary(pick - theirs, overlap_lag(args.horizon))
    print(f"test RankIC ({args.horizon}): the pick {np.mean(pick):.4f}, the evaluation's settings {np.mean(theirs):.4f}; "
          f"pick - evaluation's {d['mean']:+.4f} [{d['ci95_low']:+.4f}, {d['ci95_high']:+.4f}], {d['dates']} dates")  # fmt: skip


if __name__ == "__main__":
    main()
