"""Baseline scores, computed on the same dates as the model: 20-day momentum, 1-day reversal, a
ridge regression on the model's own features fitted on the training split, and the oracle."""

from __future__ import annotations

import numpy as np
import polars as pl


def fit_ridge(model_input: pl.DataFrame, feature_names: list[str], target: str, train_dates, alpha: float) -> np.ndarray:
    """Ridge coefficients (with intercept last) on training rows only; the target is demeaned per
    date, since only the cross-section matters."""
    train = (
        model_input.filter(pl.col("Date").is_in(pl.Series(train_dates).implode()))
        .select("Date", *feature_names, target)
        .drop_nulls(target)
        .filter(pl.col(target).is_finite())
        .with_columns((pl.col(target) - pl.col(target).mean().over("Date")).alias(target))
    )
    return ridge_solve(train.select(feature_names).to_numpy(), train[target].to_numpy(), alpha)


def ridge_solve(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Ridge coefficients of ``y`` on ``x [rows, features]`` plus an unpenalised intercept (last)."""
    x = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    penalty = alpha * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(x.T @ x + penalty, x.T @ y.astype(np.float64))


def ridge_scores(model_input: pl.DataFrame, feature_names: list[str], coef: np.ndarray) -> np.ndarray:
    x = model_input.select(feature_names).to_numpy().astype(np.float64)
    return x @ coef[:-1] + coef[-1]


def baseline_frame(
    predictions: pl.DataFrame,
    features: pl.DataFrame,
    model_input: pl.DataFrame,
    oracle: pl.DataFrame,
    splits: pl.DataFrame,
    feature_names: list[str],
    horizons: list[str],
    ridge_alpha: float,
) -> pl.DataFrame:
    """predictions (Date, Code, pred_{h}, target_{h}) joined with every baseline's score columns:
    momentum_20d, reversal_1d, ridge_{h}, oracle_{h} (oracle only when ``oracle`` has rows), and
    each stock's beta_60d and Sector33Code (to score without the market and sectors)."""
    keys = predictions.select("Date", "Code")
    # every join keeps the predictions' row order: the ridge scores below are placed by position
    raw = keys.join(features.select("Date", "Code", "ret_20d", "ret_1d", "beta_60d"), on=["Date", "Code"], how="left", maintain_order="left")
    out = predictions.join(
        raw.select("Date", "Code", pl.col("ret_20d").alias("momentum_20d"), (-pl.col("ret_1d")).alias("reversal_1d"), "beta_60d"),
        on=["Date", "Code"], how="left", maintain_order="left",
    )  # fmt: skip
    train_dates = splits.filter((pl.col("fold") == 0) & (pl.col("split") == "train"))["Date"]
    rows = keys.join(model_input, on=["Date", "Code"], how="left", maintain_order="left")
    out = out.with_columns(rows["Sector33Code"])
    for h in horizons:
        coef = fit_ridge(model_input, feature_names, f"target_{h}", train_dates, ridge_alpha)
        out = out.with_columns(pl.Series(f"ridge_{h}", ridge_scores(rows, feature_names, coef)))
    if oracle.height:
        cols = [pl.col(f"expected_return_{h}").alias(f"oracle_{h}") for h in horizons]
        out = out.join(oracle.select("Date", "Code", *cols), on=["Date", "Code"], how="left", maintain_order="left")
    return out
