"""Would refitting on the training and validation dates help? Measured on the baselines first.

    python experiments/refit_baselines.py --params '{"raw": {"synthetic_market": "random_leaders"}}'

The ridge and LightGBM of the evaluation, tuned on validation as always (the penalty; the number
of trees), scored on the test split once as fitted on the training split (what the evaluation
reports) and once refitted with the same penalty / trees on the training and validation dates
(what a model trained through the last date before the test purge would be). Prints the test RankIC
of both per horizon. Reads the data_engineering outputs only (in memory); nothing is trained.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON")
    args = parser.parse_args()

    import lightgbm as lgb
    import polars as pl

    from atft_kedro.evaluation.baselines import (BaselineConfig, _rows, fit_ridge, lightgbm_params, mean_daily_rank_ic, tuned_lightgbm,
                                                 tuned_ridge)  # fmt: skip
    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.features.splits import split_dates
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory

    params = project_parameters(json.loads(args.params))
    out = run_in_memory(["data_engineering"], params)
    model_input, names = out["model_input"], stock_feature_names(out["feature_manifest"])
    cfg = BaselineConfig.from_params(params["evaluation"])
    train, val, test = (split_dates(out["splits"], s, 0) for s in ("train", "val", "test"))
    both = pl.concat([train, val])
    print("| horizon | ridge | ridge, refitted | LightGBM | LightGBM, refitted |\n|---|---|---|---|---|")
    for h in ("1d", "5d", "10d", "20d"):
        target = f"target_{h}"
        rows = _rows(model_input, names, target, test)
        x = rows.select(names).to_numpy()

        def score(s, rows=rows, target=target):
            return mean_daily_rank_ic(rows["Date"].to_numpy(), s, rows[target].to_numpy(), cfg.min_stocks)

        coef, info = tuned_ridge(model_input, names, target, train, val, cfg)
        refitted = fit_ridge(model_input, names, target, both, info["alpha"])
        booster, _ = tuned_lightgbm(model_input, names, target, train, val, cfg)
        fit_rows = _rows(model_input, names, target, both)
        again = lgb.train(lightgbm_params(cfg.lightgbm), lgb.Dataset(fit_rows.select(names).to_numpy(), fit_rows[target].to_numpy()),
                          max(booster.best_iteration, 1))  # fmt: skip
        cells = [score(x @ coef[:-1]), score(x @ refitted[:-1]), score(booster.predict(x, num_iteration=booster.best_iteration)), score(again.predict(x))]
        print(f"| {h} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
