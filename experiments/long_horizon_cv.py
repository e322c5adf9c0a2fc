"""Would a longer record than the validation split choose the 5-20 day starts better? Purged,
blocked cross-validation over the training split (the test split is never read).

    python experiments/long_horizon_cv.py
    python experiments/long_horizon_cv.py --params '{"raw": {"synthetic_market": "random_leaders"}}'

The candidates are those of ``training.horizon_starts: validated``: the ridge on the model's
last-day features at the ridge baseline's penalties (1,000 is the linear skip's start), 20-day
momentum alone and 1-day reversal alone. The training dates are cut into ``--blocks`` contiguous
blocks; each block is scored by the candidates fitted on the other blocks less h dates on either
side (a purge: no fitted target reaches into the scored block), and the pooled mean daily RankIC
over the blocks picks one per horizon. Printed per horizon: every candidate's cross-validated,
in-sample (fitted on all training dates) and validation RankIC, and what the pick scores on
validation against the ridge start. About a minute a market (the data_engineering nodes).

``--rank-gauss`` adds the ridge at each penalty fitted to each date's targets as normal scores of
their ranks (rank-gauss: a fat-tailed day weighs no more than a calm one) instead of the targets
less their date's mean; ``--one-day`` adds the ridge at the start's penalty (1,000) fitted to the
1-day targets of the same dates (what ``training.horizon_starts: one_day`` starts the long rows
at); ``--horizons 1 5 10 20`` scores the 1-day horizon too.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON")
    parser.add_argument("--blocks", type=int, default=5, help="contiguous blocks of the training dates")
    parser.add_argument("--out", help="write the scores as JSON here")
    parser.add_argument("--rank-gauss", action="store_true", help="also the ridge fitted to rank-gauss targets")
    parser.add_argument("--one-day", action="store_true", help="also the 1-day targets' ridge (penalty 1,000)")
    parser.add_argument("--horizons", type=int, nargs="+", default=[5, 10, 20])
    args = parser.parse_args()

    import numpy as np
    import polars as pl
    import torch

    from atft_kedro.evaluation.baselines import SIGNALS, mean_daily_rank_ic, ridge_solve
    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory

    params = project_parameters(json.loads(args.params))
    data = run_in_memory(["data_engineering"], params)
    names = stock_feature_names(data["feature_manifest"])
    splits = data["splits"].filter(pl.col("fold") == 0).select("Date", "split")
    frame = data["model_input"].join(splits, on="Date").sort("Date", "Code")
    alphas = params["evaluation"]["ridge_alphas"]
    min_stocks = params["training"]["min_stocks"]

    def rows(split: str, h: int):
        part = frame.filter((pl.col("split") == split) & pl.col(f"target_{h}d").is_finite())
        target = pl.col(f"target_{h}d")
        part = part.with_columns((target - target.mean().over("Date")).alias("y"), ((target.rank() - 0.5) / pl.len()).over("Date").alias("u"))
        gauss = torch.special.ndtri(torch.from_numpy(part["u"].to_numpy())).numpy()
        return part["Date"].to_numpy(), part.select(names).to_numpy().astype(np.float64), np.stack([part["y"].to_numpy(), gauss], 1)

    one_day = rows("train", 1) if args.one_day else None  # the 1-day targets' rows, fitted by --one-day only

    def candidates(x, y, dates=None) -> dict:
        """y [rows, 2]: the targets less their date's mean, and as rank-gauss scores; ``dates``: the
        fitted dates (None: every training date), whose 1-day targets ``--one-day`` fits."""
        out = {f"ridge {a:g}": ridge_solve(x, y[:, 0], float(a)) for a in alphas}
        if args.rank_gauss:
            out |= {f"ridge {a:g}, rank-gauss targets": ridge_solve(x, y[:, 1], float(a)) for a in alphas}
        if args.one_day:
            d1, x1, y1 = one_day
            mine = np.ones(len(d1), dtype=bool) if dates is None else np.isin(d1, dates)
            out["ridge 1000 of the 1-day targets"] = ridge_solve(x1[mine], y1[mine, 0], 1000.0)
        for name, (feature, sign) in SIGNALS.items():
            out[name] = np.zeros(x.shape[1] + 1)
            out[name][names.index(feature)] = sign
        return out

    def rank_ic(coef, d, x, y) -> float:
        return mean_daily_rank_ic(d, x @ coef[:-1], y[:, 0], min_stocks)

    result = {}
    for h in args.horizons:
        d, x, y = rows("train", h)
        days = np.unique(d)
        pooled = {}
        for block in np.array_split(days, args.blocks):
            first, last = np.searchsorted(days, block[0]), np.searchsorted(days, block[-1])
            fit_days = np.concatenate([days[: max(first - h, 0)], days[last + 1 + h :]])
            fit, scored = np.isin(d, fit_days), np.isin(d, block)
            for name, coef in candidates(x[fit], y[fit], fit_days).items():
                pooled[name] = pooled.get(name, 0.0) + rank_ic(coef, d[scored], x[scored], y[scored]) * len(block) / len(days)
        dv, xv, yv = rows("val", h)
        fitted = candidates(x, y)
        val = {name: rank_ic(coef, dv, xv, yv) for name, coef in fitted.items()}
        in_sample = {name: rank_ic(coef, d, x, y) for name, coef in fitted.items()}
        pick = max(pooled, key=pooled.get)
        result[f"{h}d"] = {"cv": pooled, "in_sample": in_sample, "val": val, "pick": pick}
        print(f"\n{h}d: cross-validation picks {pick}: validation {val[pick]:+.4f}, the ridge start (1000) {val['ridge 1000']:+.4f}")
        print("| candidate | cross-validated | in-sample | validation |\n|---|---|---|---|")
        for name in pooled:
            print(f"| {name} | {pooled[name]:+.4f} | {in_sample[name]:+.4f} | {val[name]:+.4f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
