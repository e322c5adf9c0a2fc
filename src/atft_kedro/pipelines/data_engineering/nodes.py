"""data_engineering nodes: typed config in, one library call, result out."""

from __future__ import annotations

import dataclasses
import logging

import polars as pl

from atft_kedro.data.sources import SourceConfig, load_market
from atft_kedro.features import builders, normalise, panel, splits, targets
from atft_kedro.pipelines.typed import typed
from atft_kedro.provenance import data_fingerprint, describe

log = logging.getLogger(__name__)


def load_raw_market(source: str, params: SourceConfig, jquants_credentials=None):
    """-> daily_quotes, listed_info, topix, oracle_returns, quarantine. ``jquants_credentials`` comes
    from conf/local/credentials.yml through the project's hook (see ``atft_kedro.hooks``)."""
    market, oracle = load_market(source, typed(SourceConfig, params), jquants_credentials)
    q = market.daily_quotes
    log.info(
        "source=%s: %d quotes, %d stocks, %d dates (%s .. %s); %d rows quarantined",
        source, q.height, q["Code"].n_unique(), q["Date"].n_unique(), q["Date"].min(), q["Date"].max(),
        market.quarantine.height,
    )  # fmt: skip
    if market.quarantine.height:
        log.warning("quarantined rows by reason: %s", dict(market.quarantine["reason"].value_counts().iter_rows()))
    return market.daily_quotes, market.listed_info, market.topix, oracle, market.quarantine


def build_panel(daily_quotes: pl.DataFrame, listed_info: pl.DataFrame) -> pl.DataFrame:
    return panel.build_panel(daily_quotes, listed_info)


def build_features(panel: pl.DataFrame, topix: pl.DataFrame):
    """-> features, market_features, feature_manifest."""
    features, market, manifest = builders.build_features(panel, topix)
    log.info(
        "%d stock features and %d market features on %d rows",
        sum(not m["date_constant"] for m in manifest), sum(m["date_constant"] for m in manifest), features.height,
    )  # fmt: skip
    return features, market, manifest


def build_targets(panel: pl.DataFrame) -> pl.DataFrame:
    return targets.build_targets(panel)


def make_splits(panel: pl.DataFrame, params: splits.SplitConfig) -> pl.DataFrame:
    result = splits.make_splits(panel["Date"], typed(splits.SplitConfig, params))
    summary = result.group_by("fold", "split").agg(pl.col("Date").min().alias("start"), pl.col("Date").max().alias("end"), pl.len())
    for row in summary.sort("fold", "start").iter_rows(named=True):
        log.info("fold %d %-5s %s .. %s (%d dates)", row["fold"], row["split"], row["start"], row["end"], row["len"])
    return result


def build_model_input(
    features: pl.DataFrame | pl.LazyFrame, targets: pl.DataFrame, panel: pl.DataFrame, feature_manifest: list[dict], params: dict
) -> pl.DataFrame:
    """Per-date normalised stock features (robust z-scores; ranks for ``rank_groups``; each date's
    statistics from the stocks that traded that day) joined with targets and the traded flag
    (``normalise.model_input_rows``, which inference also calls). ``features`` is read whole (the
    catalog loads it lazily, for the evaluation's few columns)."""
    if isinstance(features, pl.LazyFrame):
        features = features.collect()
    return normalise.model_input_rows(
        features, panel, feature_manifest, clip=params["clip"], rank_groups=params.get("rank_groups", ()), targets=targets
    )


def build_market_context(market_features: pl.DataFrame, splits: pl.DataFrame, params: dict) -> pl.DataFrame:
    """Market features standardised with statistics of the first fold's training dates only (a
    walk-forward run refits them for each later fold: training.data.with_market_context)."""
    return normalise.market_context_of_fold(market_features, splits, 0, params["clip"])


def fingerprint_data(daily_quotes, listed_info, topix, source: str, split_params: splits.SplitConfig, normalisation: dict) -> dict:
    """-> data_fingerprint: what every derived artifact records it was built from (see provenance).
    The validated tables stand for the source's parameters (a synthetic market's seed and size, a
    files folder): the same tables from another path are the same data."""
    tables = {"daily_quotes": daily_quotes, "listed_info": listed_info, "topix": topix}
    split_params = dataclasses.asdict(typed(splits.SplitConfig, split_params))
    fp = data_fingerprint(tables, {"splits": split_params, "normalisation": normalisation}, source)
    fp["normalisation"] = dict(normalisation)  # readable: every checkpoint keeps it, so any of them tells inference how to normalise
    log.info("data fingerprint: %s", describe(fp))
    return fp
