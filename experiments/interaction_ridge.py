"""Is there a return-times-size interaction in a market for a forecaster to find? Without training.

    python experiments/interaction_ridge.py --params '{"raw": {"synthetic_overrides": {"short_term_momentum": 0.15}}}'

Per walk-forward fold, the ridge on the features the baselines see (the last day's robust z-scores),
fitted on the training split, against the same ridge given two products beside them: the day's
residual return (``--return``) times the stock's log traded value (``--size``; per date a robust
z-score, so below 0 is the smaller half), and times that half's indicator. Validation RankIC at
each of ``--alphas`` (the linear skip starts at 1,000). What the products add is what a forecaster
that forms them (a tree, a network) could find beyond a linear map; the research log's twelfth
session uses it to check that a planted interaction is there to be found. The test split is not
read.
"""

from __future__ import annotations

import argparse


def with_products(x, names: list[str], ret: str, size: str):
    """``x`` (rows x ``names``) with ``ret * size`` and ``ret * (size < 0)`` beside it."""
    import numpy as np

    r, s = x[:, names.index(ret)], x[:, names.index(size)]
    return np.column_stack([x, r * s, r * (s < 0)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON")
    parser.add_argument("--horizon", default="1d")
    parser.add_argument("--return", dest="ret", default="resid_ret_1d", help="the return feature")
    parser.add_argument("--size", default="log_turnover", help="the size feature")
    parser.add_argument("--alphas", default="100,1000,10000", help="ridge penalties, comma-separated")
    args = parser.parse_args()

    from _folds import market
    from atft_kedro.evaluation.baselines import mean_daily_rank_ic, ridge_solve

    data, target = market(args.params), f"target_{args.horizon}"
    for name in (args.ret, args.size):
        if name not in data.names:
            raise SystemExit(f"no stock feature {name!r}; the features are {data.names}")
    print(f"| fold | penalty | ridge, validation | with {args.ret} x {args.size} | difference |")
    print("|---|---|---|---|---|")
    for fold, _, rows, x in data.folds(target):
        y, days = rows["train"][target].to_numpy(), rows["val"]["Date"].to_numpy()
        for alpha in (float(a) for a in args.alphas.split(",")):
            scores = []
            for make in (lambda m: m, lambda m: with_products(m, data.names, args.ret, args.size)):
                w = ridge_solve(make(x["train"]), y, alpha)
                scores.append(mean_daily_rank_ic(days, make(x["val"]) @ w[:-1], rows["val"][target].to_numpy(), data.cfg.min_stocks))
            print(f"| {fold} | {alpha:g} | {scores[0]:.4f} | {scores[1]:.4f} | {scores[1] - scores[0]:+.4f} |", flush=True)


if __name__ == "__main__":
    main()
