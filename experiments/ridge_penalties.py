"""The ridge's validation RankIC at each horizon as its penalty grows, to the covariance limit.

    python experiments/ridge_penalties.py --params '{"raw": {"synthetic_seed": 21}}' [--alphas 1e3 1e5 1e7] [--neutral-targets]

Fits the evaluation's ridge (``evaluation.baselines``' ``fit_ridge``, as ``tuned_ridge`` fits its
grid: the training split's rows, the target less its date's mean) at each penalty of ``--alphas``
and at the limit as the penalty grows (each feature weighted by its covariance with the target,
``covariance_weights``), and prints each
fit's validation RankIC raw and with sectors and beta out, per fold (walk-forward) and horizon. Validation only: nothing
here reads the test split. The market's data_engineering runs in memory (``_folds.market``).
``--neutral-targets``: each fit is made on the training targets less each date's sector means
and beta part (``neutralise_targets``, what ``training.targets: neutral_long`` trains the 5-20
day heads on), and still scored on the returns as they are and with sectors and beta out.
"""

from __future__ import annotations

import argparse

from atft_kedro.evaluation.baselines import covariance_weights  # the limit, as training's `horizon_starts: covariance` takes it
from atft_kedro.features.targets import neutralise_targets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's (JSON), as seeds.py takes them")
    parser.add_argument("--alphas", nargs="+", type=float, default=[1e3, 1e5, 1e6, 1e7, 1e8])
    parser.add_argument("--neutral-targets", action="store_true", help="fit on the targets with sectors and beta out")
    args = parser.parse_args()

    from _folds import market
    from atft_kedro.features.splits import split_dates

    mk = market(args.params)
    fit_on = neutralise_targets(mk.model_input) if args.neutral_targets else None
    print("| fold | horizon | " + " | ".join([f"penalty {a:g}" for a in args.alphas] + ["the limit (covariance)"]) + " |")
    print("|---|---|" + "---|" * (len(args.alphas) + 1))
    for fold in sorted(mk.splits["fold"].unique()):
        train, val = (split_dates(mk.splits, s, fold) for s in ("train", "val"))
        for h in ("1d", "5d", "10d", "20d"):
            print(f"| {fold} | {h} (raw / sectors and beta out) | " + " | ".join(validation_scores(mk, h, train, val, args.alphas, fit_on)) + " |", flush=True)


def validation_scores(mk, h: str, train, val, alphas, fit_on=None) -> list[str]:
    """Each fit's validation RankIC at ``h``, raw / with sectors and beta out, as table cells; the
    fits on ``fit_on``'s training rows (a model input with other targets; None: ``mk``'s own)."""
    import numpy as np
    import polars as pl

    from atft_kedro.evaluation.baselines import _rows, frame_products, solve_ridge_gram
    from seeds import _daily

    target = f"target_{h}"
    rows = mk.model_input.filter(pl.col("Date").is_in(pl.Series(val).implode())).drop_nulls(target).filter(pl.col(target).is_finite())
    x = rows.select(mk.names).fill_nan(0.0).fill_null(0.0).to_numpy().astype(np.float64)
    fitted = _rows(mk.model_input if fit_on is None else fit_on, mk.names, target, train)
    gram, moment = frame_products(fitted, mk.names, target)  # fit_ridge's fits, one product
    fits = {f"a{a:g}": solve_ridge_gram(gram, moment, a)[:-1] for a in alphas}
    fits["limit"] = covariance_weights(fitted.select(mk.names).fill_nan(0.0).fill_null(0.0).to_numpy().astype(np.float64), fitted[target].to_numpy())
    frame = rows.select("Date", "Code", target, "beta_60d", "Sector33Code").with_columns(**{k: pl.Series(x @ w) for k, w in fits.items()})
    cells = []
    for k in fits:
        raw, neutral = (float(np.mean(list(_daily(frame, k, target, n).values()))) for n in (False, True))
        cells.append(f"{raw:+.4f} / {neutral:+.4f}")
    return cells


if __name__ == "__main__":
    main()
