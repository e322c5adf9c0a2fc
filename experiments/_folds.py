"""A market's data_engineering outputs and its walk-forward folds as the baselines see them, for the
experiments that fit on the last day's features (``tabular_nets.py``, ``winsorised_ridge.py``)."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Market:
    params: dict  # conf/base's parameters with the experiment's merged in
    model_input: object  # polars.DataFrame
    names: list  # the stock features, the baselines' inputs
    splits: object  # polars.DataFrame
    cfg: object  # evaluation.baselines.BaselineConfig
    manifest: list  # the feature manifest: each feature's group
    features: object = None  # polars.DataFrame: the features before normalisation (their raw units)

    def folds(self, target: str):
        """Per fold, in order: (fold, {split: its dates}, {split: its rows (``_rows``: finite
        target, less its date's mean)}, {split: the rows' features, NaN and null as 0})."""
        from atft_kedro.evaluation.baselines import _rows
        from atft_kedro.features.splits import split_dates

        for fold in sorted(self.splits["fold"].unique()):
            dates = {s: split_dates(self.splits, s, fold) for s in ("train", "val", "test")}
            rows = {s: _rows(self.model_input, self.names, target, d) for s, d in dates.items()}
            yield fold, dates, rows, {s: f.select(self.names).fill_nan(0.0).fill_null(0.0).to_numpy() for s, f in rows.items()}

    def raw_feature(self, name: str, target: str, dates):
        """``name`` before normalisation for the rows ``folds`` gives the split of ``dates`` (the same
        rows, in the same order; null where the feature is)."""
        import polars as pl

        raw = self.features.select("Date", "Code", pl.col(name).alias("_raw"))
        rows = (
            self.model_input.filter(pl.col("Date").is_in(pl.Series(dates).implode()))
            .select("Date", "Code", target).drop_nulls(target).filter(pl.col(target).is_finite())
        )  # fmt: skip
        return rows.join(raw, on=["Date", "Code"], how="left", maintain_order="left")["_raw"].to_numpy()

    def other_target(self, name: str, target: str, dates):
        """The target ``name`` (say target_5d) for the rows ``folds`` gives the split of ``dates``
        (the same rows, in the same order), less its date's mean as ``folds``' target is; NaN where
        it is missing."""
        import polars as pl

        rows = (
            self.model_input.filter(pl.col("Date").is_in(pl.Series(dates).implode()))
            .select("Date", target, pl.col(name).alias("_other")).drop_nulls(target).filter(pl.col(target).is_finite())
            .with_columns(pl.when(pl.col("_other").is_finite()).then(pl.col("_other")).alias("_other"))
        )  # fmt: skip
        return rows.select(pl.col("_other") - pl.col("_other").mean().over("Date"))["_other"].fill_null(float("nan")).to_numpy()

    def lightgbm(self, rows, target: str, seed: int | None = None):
        """The evaluation's LightGBM forecasts of ``rows`` (Date, Code and, walk-forward, the fold that
        scores each; a frame the runs scored), each fold's rows by that fold's fit (trees early-stopped
        on its validation RankIC), with ``seed`` in place of ``evaluation.lightgbm.seed`` if given."""
        import dataclasses

        import numpy as np

        from atft_kedro.evaluation.baselines import bagged_lightgbm, features_of, row_folds
        from atft_kedro.features.splits import split_dates

        cfg = self.cfg if seed is None else dataclasses.replace(self.cfg, lightgbm=dataclasses.replace(self.cfg.lightgbm, seed=seed, bag=1))
        x, of_fold = features_of(rows, self.model_input, self.names), row_folds(rows)
        forecast = np.full(rows.height, np.nan)
        for fold in np.unique(of_fold):
            train, val = (split_dates(self.splits, s, int(fold)) for s in ("train", "val"))
            mine = of_fold == fold
            forecast[mine], _ = bagged_lightgbm(self.model_input, self.names, target, train, val, cfg, x[mine])
        return forecast


def market(params_json: str) -> Market:
    """The data_engineering outputs of the market ``params_json`` names (merged into conf/base's
    parameters), run in memory; torch on one thread."""
    import torch

    from atft_kedro.evaluation.baselines import BaselineConfig
    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory

    torch.set_num_threads(1)
    params = project_parameters(json.loads(params_json))
    out = run_in_memory(["data_engineering"], params)
    return Market(params, out["model_input"], stock_feature_names(out["feature_manifest"]), out["splits"],
                  BaselineConfig.from_params(params["evaluation"]), out["feature_manifest"], out["features"])  # fmt: skip
