"""The ridge baseline's penalty grid fitted from one product of the design against one fit per
penalty (the reference), alternating, on a full-size-like training split.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        python tests/benchmarks/bench_ridge_grid.py [--dates 300 --stocks 3800 --features 91 --repeats 3]

``tuned_ridge`` (``frame_products``: the design's products once, then a solve per penalty)
against ``fit_ridge`` at each penalty of ``evaluation.ridge_alphas`` (conf/base), as tuned_ridge
fitted before. Both pick on the same validation dates; prints each repeat's seconds, the ratio of
the medians and whether the kept coefficients are the same bits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

import numpy as np
import polars as pl


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dates", type=int, default=300)
    parser.add_argument("--stocks", type=int, default=3800)
    parser.add_argument("--features", type=int, default=91)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from atft_kedro.evaluation.baselines import BaselineConfig, _rows, fit_ridge, mean_daily_rank_ic, tuned_ridge
    from atft_kedro.pipelines.in_memory import project_parameters

    cfg = BaselineConfig.from_params(project_parameters({})["evaluation"])
    rng = np.random.default_rng(0)
    n_val = args.dates // 4
    days = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(args.dates + n_val)]
    x = rng.standard_normal((len(days) * args.stocks, args.features)).astype(np.float32)
    names = [f"f{i}" for i in range(args.features)]
    frame = pl.DataFrame({"Date": pl.Series(days).gather(np.repeat(np.arange(len(days)), args.stocks)), **{n: x[:, i] for i, n in enumerate(names)},
                          "target_1d": 0.05 * x[:, :5].sum(1) + rng.standard_normal(len(x))})  # fmt: skip
    train, val = pl.Series(days[: args.dates]), pl.Series(days[args.dates :])

    def per_penalty():
        rows = _rows(frame, names, "target_1d", val)
        xv, best = rows.select(names).to_numpy().astype(np.float64), None
        for alpha in cfg.ridge_alphas:
            coef = fit_ridge(frame, names, "target_1d", train, alpha)
            score = mean_daily_rank_ic(rows["Date"].to_numpy(), xv @ coef[:-1], rows["target_1d"].to_numpy(), cfg.min_stocks)
            if best is None or score > best[1]:
                best = coef, score
        return best[0]

    seconds = {"one fit per penalty (reference)": [], "tuned_ridge": []}
    for _ in range(args.repeats):
        t = time.perf_counter()
        reference = per_penalty()
        seconds["one fit per penalty (reference)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        coef, _ = tuned_ridge(frame, names, "target_1d", train, val, cfg)
        seconds["tuned_ridge"].append(time.perf_counter() - t)
    for name, s in seconds.items():
        print(f"{name}: " + ", ".join(f"{v:.2f} s" for v in s))
    ratio = statistics.median(seconds["one fit per penalty (reference)"]) / statistics.median(seconds["tuned_ridge"])
    print(f"{len(cfg.ridge_alphas)} penalties, {args.dates} x {args.stocks} training rows x {args.features} features: "
          f"tuned_ridge {ratio:.2f}x faster; the kept coefficients the same bits: {np.array_equal(coef, reference)}")  # fmt: skip


if __name__ == "__main__":
    main()
