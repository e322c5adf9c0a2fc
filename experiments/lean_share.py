"""The 1-day forecast's share of each long forecast (``forecast.one_day_share``) chosen again,
computed on saved runs (no training).

A run's frames hold the long forecasts leaned at the share it ran with (``--saved``, 0.5): per
date ``pred_h = head_h + c * (pred_1d - its mean)`` with ``c = k * sd(head_h) / sd(pred_1d)``, ``k =
share / (1 - share)`` (``training.predict.lean_on_one_day``). Each date's ``sd(head_h)`` follows
from the leaned forecast's variance and its covariance with the 1-day forecast (``heads``), so the
heads come back exactly where the saved share is known and at most 0.5 (above it two heads fit;
nothing in the frames tells the share, so ``--saved`` must be the one the runs ran with). They are
then leaned at each ``--shares`` value with the evaluation's own function, and the script prints,
per group of runs, each share minus the saved one on validation (``--test S``: on test, for that
share), raw and with sectors and beta out. The rule these numbers were read by:
docs/what_training_has_shown.md, the thirty-first session.

    python experiments/lean_share.py --run default F7 F21 ... --run previous F7 ... \\
        --run stocknet S0 S1 S2 [--shares 0.25 0.375 0.625] [--test 0.375]

A group whose runs share one seed is a set of draws, each a market of its own
(``seeds.pooled_markets``); a group of several seeds on one market (stocknet) is averaged date by
date first (``seeds.paired_settings``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ridge_lean import LONG, gain, loaded_runs  # noqa: E402
from seeds import interval_cell  # noqa: E402

from atft_kedro.training.predict import lean_on_one_day  # noqa: E402


def heads(frame: pl.DataFrame, share: float) -> pl.DataFrame:
    """``frame``'s long forecasts with the lean of ``share`` on the 1-day forecast taken out. With
    ``L = a + c d`` (centred per date, ``c = k sd(a) / sd(d)``): ``cov(L, d) = sd(a) sd(d) (rho +
    k)`` and ``var(L) = sd(a)^2 (1 + k^2 + 2 k rho)``, so ``sd(a)`` is the positive root of ``(1 -
    k^2) s^2 + 2 k cov(L, d) / sd(d) s - var(L) = 0`` (at ``k`` = 1: ``var(L) sd(d) / (2
    cov(L, d))``); for ``share`` at most 0.5 (``k`` <= 1) that root is the only positive one. Only
    the ``pred_`` columns are restored; the rest stay as saved."""
    if not 0 < share <= 0.5:
        raise ValueError(f"the heads come back from a lean of share in (0, 0.5] only (above it two heads fit), got {share!r}")
    k = share / (1.0 - share)
    d = pl.col("pred_1d") - pl.col("pred_1d").mean().over("Date")
    sd_d = pl.col("pred_1d").std().over("Date")
    out = {}
    for h in LONG:
        centred = pl.col(f"pred_{h}") - pl.col(f"pred_{h}").mean().over("Date")
        var, cov = pl.col(f"pred_{h}").var().over("Date"), (centred * d).sum().over("Date") / (pl.len().over("Date") - 1)
        b = 2 * k * cov / sd_d
        sd_a = var / b if k == 1.0 else (-b + (b * b + 4 * (1 - k * k) * var).sqrt()) / (2 * (1 - k * k))
        c = pl.when(sd_d > 0).then(k * sd_a / sd_d).otherwise(0.0)
        out[f"pred_{h}"] = pl.col(f"pred_{h}") - c * d
    return frame.with_columns(**out)


def releaned(frame: pl.DataFrame, saved: float, share: float) -> pl.DataFrame:
    """``frame`` with its long forecasts leaned at ``share`` instead of ``saved`` (0: the heads)."""
    return lean_on_one_day(heads(frame, saved), share)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", nargs="+", action="append", required=True, metavar="LABEL FILE", help="a group's label and its runs.json files")
    ap.add_argument("--saved", type=float, default=0.5, help="the share the runs were leaned at")
    ap.add_argument("--shares", nargs="+", type=float, default=[0.25, 0.375, 0.625])
    ap.add_argument("--test", type=float, default=None, help="read test with this share")
    args = ap.parse_args(argv)
    groups = loaded_runs([[label, "{}", *files] for label, *files in args.run], ridge=False)
    for label, runs in groups.items():
        several = len({r["seed"] for r in runs}) > 1
        print(f"\n## {label}: {len(runs)} run(s)" + (" of one market, averaged per date" if several else ", each a market of its own"))
        splits = [("validation", "val", s) for s in args.shares] + ([("test", "test", args.test)] if args.test is not None else [])
        for neutral in (False, True):
            print(f"\n### each share minus {args.saved}{', sectors and beta out' if neutral else ''}\n")
            print("| split | share | " + " | ".join(LONG) + " | mean of the three |\n|---|---|---|---|---|---|")
            for name, split, s in splits:
                cells = [gain([(releaned(r[split], args.saved, s), r[split]) for r in runs], h, neutral, several) for h in LONG]
                print(f"| {name} | {s} | " + " | ".join(interval_cell(c) for c in cells) + f" | {np.mean([c['mean'] for c in cells]):+.4f} |")


if __name__ == "__main__":
    main()
