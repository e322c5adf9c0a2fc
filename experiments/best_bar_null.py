"""How far below the best baseline on test a forecaster as good as that baseline would land.

    python experiments/best_bar_null.py draw7.json draw21.json draw22.json draw23.json draw24.json
    python experiments/best_bar_null.py draw7.json draw21.json --neutral --horizons 20d --draws 4000

"The best baseline on test" is the highest of four noisy test means, chosen after they are read, so
even a forecaster exactly as skilled as the best of them is expected to fall below it. This script
measures that shortfall on the runs' own test dates. Each argument is one market (a ``seeds.py``
JSON of runs; a comma-joined list is its seeds, scored as their per-date mean). Per market the
per-date RankIC of the model and of every baseline are resampled together in blocks of
``max(5, h)`` dates (a moving-block bootstrap that keeps the dates' dependence within and across
the scorers), and the markets' mean of "model minus the best of the four" is recomputed under two
nulls (``shortfall_nulls``; every run's report gives the first for its own market):

- *all equal*: every scorer's series moved to one mean. The model is as skilled as each baseline;
  the selection is then at its largest.
- *as observed*: the baselines keep their observed means and the model is moved to the best one's.
  Observed spreads are widened by noise, so this null's selection is, if anything, too small.

It prints, per horizon, the observed mean shortfall, each null's mean and 5% quantile, and the share
of each null's draws at or below what was observed (a one-sided p-value: small, the model is below
the best baseline by more than the selection explains). Test frames only; nothing is fitted.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from atft_kedro.evaluation.metrics import shortfall_nulls  # the evaluation's report takes its "all equal" null (selection_of_the_best)


def per_date_matrix(runs: list[dict], h: str, neutral: bool) -> np.ndarray:
    """One market's seeds (``seeds.py`` rows) -> [dates, 5]: the seeds' mean model RankIC, then
    momentum, reversal, ridge and LightGBM, on the test dates all five scored."""
    import polars as pl

    from seeds import BASELINES, scored_daily

    model, scored = scored_daily([pl.read_parquet(r["frame"]) for r in runs], h, neutral)
    base = [scored[b] for b in BASELINES]  # momentum, reversal, ridge, LightGBM
    dates = sorted(set.intersection(*(set(d) for d in model + base)))
    return np.array([[np.mean([m[t] for m in model])] + [b[t] for b in base] for t in dates])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("markets", nargs="+", help="one seeds.py JSON per market (comma-joined: its seeds)")
    parser.add_argument("--horizons", nargs="+", default=["1d", "5d", "10d", "20d"])
    parser.add_argument("--neutral", action="store_true", help="score against the returns less sector means and beta")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()

    runs = [[row for path in arg.split(",") for row in json.loads(open(path).read())] for arg in args.markets]
    title = "test RankIC" + (", sector means and beta out" if args.neutral else "")
    print(f"### {title}: the model minus the best baseline on test, {len(runs)} markets' mean, against a model as good as it\n")
    print("| horizon | observed | all equal: mean, 5% | p | as observed: mean, 5% | p |")
    print("|---|---|---|---|---|---|")
    for h in args.horizons:
        days = int(h[:-1])
        out = shortfall_nulls([per_date_matrix(r, h, args.neutral) for r in runs], max(5, days), args.draws)
        cells = [f"{out['observed']:+.4f}"]
        for name in ("all equal", "as observed"):
            null = out[name]
            cells += [f"{null.mean():+.4f}, {np.quantile(null, 0.05):+.4f}", f"{np.mean(null <= out['observed']):.3f}"]
        print(f"| {h} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
