"""The data_engineering steps in one call, for scripts, benchmarks and tests that start from raw
tables in memory (the pipeline runs the same functions as separate nodes)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from atft_kedro.features import builders, normalise, panel, splits, targets


@dataclass(frozen=True)
class ModelData:
    panel: pl.DataFrame
    model_input: pl.DataFrame  # per-date robust z-scored features + targets
    market_context: pl.DataFrame  # scaled with training-date statistics
    splits: pl.DataFrame
    manifest: list[dict]

    @property
    def feature_names(self) -> list[str]:
        return [m["name"] for m in self.manifest if not m["date_constant"]]


def prepare_model_data(
    daily_quotes: pl.DataFrame, listed_info: pl.DataFrame, topix: pl.DataFrame, split_cfg: splits.SplitConfig | None = None
) -> ModelData:
    p = panel.build_panel(daily_quotes, listed_info)
    feats, market, manifest = builders.build_features(p, topix)
    names = [m["name"] for m in manifest if not m["date_constant"]]
    model_input = normalise.robust_zscore_by_date(feats, names).join(targets.build_targets(p), on=["Date", "Code"])
    sp = splits.make_splits(p["Date"], split_cfg or splits.SplitConfig())
    train_dates = sp.filter((pl.col("fold") == 0) & (pl.col("split") == "train"))["Date"]
    context, _ = normalise.standardise_with_train_stats(market, market.columns[1:], train_dates)
    return ModelData(p, model_input, context, sp, manifest)
