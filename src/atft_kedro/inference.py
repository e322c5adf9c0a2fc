"""Tomorrow's ranking: a trained model scored on the latest date of the data.

``latest_ranking`` takes the latest data as data_engineering builds it (panel, features, market
features) and the training run's artifacts (the model, its feature manifest, the splits whose
training dates fitted the market-context scaling, the graphs' configuration), and scores every
stock of the as-of date for the trading day after it. Nothing is refitted and nothing is re-split:

* stock features are z-scored per date (each date's own cross-section, as in training);
* the market context is scaled with statistics of the training dates of the kept model's fold (a
  walk-forward run keeps its last fold's), which the latest data holds unchanged (features are
  point-in-time);
* the graph of the as-of date is built with the training run's graph configuration.

Only rows up to the as-of date are read. It refuses, with what to rerun, when the data's features
differ from the model's, when the graphs were built with another configuration, or when the as-of
date has no data.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import polars as pl
import torch

from atft_kedro.evaluation.baselines import LIQUIDITY, LIQUIDITY_BUCKETS
from atft_kedro.evaluation.metrics import bucket_of
from atft_kedro.evaluation.report import kept_checkpoint
from atft_kedro.features.builders import stock_feature_names
from atft_kedro.features.normalise import market_context_of_fold, model_input_rows
from atft_kedro.features.splits import kept_fold, split_dates
from atft_kedro.features.targets import target_columns
from atft_kedro.graph.correlation import GraphConfig, build_graphs
from atft_kedro.training.checkpoints import model_from_checkpoint
from atft_kedro.training.config import TrainConfig
from atft_kedro.training.data import DateDataset, build_arrays
from atft_kedro.training.predict import lean_on_one_day, predict

log = logging.getLogger(__name__)

RETRAIN = "kedro run (or kedro run --pipelines data_engineering,graph_construction,training)"
THIN_DAY_SHARE, THIN_DAY_LOOKBACK = 0.5, 20  # an as-of date with under half the usual traded stocks is said


class InferenceError(RuntimeError):
    """The latest data cannot be scored with this model; the message says what to rerun."""


def latest_ranking(
    model: dict,
    panel: pl.DataFrame,
    features: pl.DataFrame,
    market_features: pl.DataFrame,
    feature_manifest: list[dict],
    splits: pl.DataFrame,
    graph_config: dict,
    clip: float,
    as_of=None,
    rank_groups=(),
    one_day_share: float = 0.0,
) -> pl.DataFrame:
    """-> one row per stock that traded on the as-of date: Code, Sector33Code, MarketCode, traded, and per
    horizon the median forecast ``score_{h}``, its quantiles ``q05_{h}`` .. ``q95_{h}`` and
    ``rank_{h}`` (1 = the highest expected return), with the stock's 20-day Amihud illiquidity and
    ``liquidity_third`` (1: the most liquid third of the ranked stocks, as the evaluation's
    ``by_liquidity`` cuts them), sorted by ``rank_1d``."""
    names = stock_feature_names(model["feature_manifest"])
    if stock_feature_names(feature_manifest) != names:
        raise InferenceError(
            "the latest data's stock features differ from those the model was trained on "
            f"({len(stock_feature_names(feature_manifest))} against {len(names)}); retrain: {RETRAIN}"
        )
    # every checkpoint's data fingerprint keeps it (models of 2026-12-04 kept it beside); one from before: no rank groups
    trained = (model.get("data_fingerprint") or {}).get("normalisation") or model.get("normalisation") or {}
    if sorted(trained.get("rank_groups", ())) != sorted(rank_groups) or trained.get("clip", clip) != clip:
        raise InferenceError(
            f"the model was trained on features normalised with rank_groups {sorted(trained.get('rank_groups', ()))} and clip "
            f"{trained.get('clip', clip)}, but inference has rank_groups {sorted(rank_groups)} and clip {clip}: run it with the "
            f"training's normalisation parameters, or retrain: {RETRAIN}"
        )
    trained_on = {k: v for k, v in graph_config.items() if k != "edge_attributes"}
    cfg = GraphConfig(**trained_on)
    as_of = _as_of(panel, as_of)
    _say_if_in_sample(splits, as_of)
    window = TrainConfig(**model["config"]["train"]).window
    dates = panel.filter(pl.col("Date") <= as_of)["Date"].unique().sort()
    recent = dates.tail(window)

    known = panel.filter(pl.col("Date").is_in(recent.implode())).select("Date", "Code", "traded", "Sector33Code", "MarketCode")
    latest = features.filter(pl.col("Date").is_in(recent.implode()))
    stock = model_input_rows(latest, known, feature_manifest, clip=clip, rank_groups=rank_groups)  # as data_engineering's model input
    model_input = stock.with_columns(pl.lit(None, pl.Float64).alias(c) for c in target_columns())
    _holds_the_training_dates(market_features, split_dates(splits, "train", kept_fold(splits)), model)
    context = market_context_at(market_features, splits, as_of, clip)
    arrays = build_arrays(model_input, context.filter(pl.col("Date").is_in(recent.implode())), names)
    graphs = build_graphs(panel.filter(pl.col("Date") <= as_of), cfg, dates=[as_of], progress=False)

    net = model_from_checkpoint(model, "the catalog's model checkpoint")
    train_cfg = dataclasses.replace(TrainConfig(**model["config"]["train"]), mode="safe")
    preds = predict(net, DateDataset(arrays, graphs, [len(arrays.dates) - 1], window), train_cfg, torch.device("cpu"), quantiles=True,
                    parts=True)  # fmt: skip
    preds = lean_on_one_day(preds, one_day_share)  # the long horizons as the evaluation scored them
    horizons = [c.removeprefix("pred_") for c in preds.columns if c.startswith("pred_")]
    ranking = preds.select(
        "Code",
        *[pl.col(f"pred_{h}").alias(f"score_{h}") for h in horizons],
        *[c for c in preds.columns if c.startswith(("q", "part_")) and c.split("_")[-1] in horizons],
    ).with_columns(pl.col(f"score_{h}").rank("ordinal", descending=True).cast(pl.Int32).alias(f"rank_{h}") for h in horizons)
    today = known.filter(pl.col("Date") == as_of).drop("Date")
    out = today.join(ranking, on="Code", how="inner")
    if LIQUIDITY in features.columns:  # how much each name can be traded in size: the evaluation's liquidity thirds, as of today
        out = out.join(features.filter(pl.col("Date") == as_of).select("Code", LIQUIDITY), on="Code", how="left", maintain_order="left")
        third = bucket_of(LIQUIDITY, len(LIQUIDITY_BUCKETS)) + 1  # 1: the most liquid third of today's ranked stocks
        out = out.with_columns(third.cast(pl.Int8).alias("liquidity_third"))
    return out.with_columns(pl.lit(as_of).alias("as_of")).sort(f"rank_{horizons[0]}")


def market_context_at(market_features: pl.DataFrame, splits: pl.DataFrame, as_of, clip: float) -> pl.DataFrame:
    """The market context up to ``as_of``, scaled as the kept model was trained with it: with the
    statistics of all its fold's training dates, also where ``as_of`` falls among them (each date's
    value is its own, scaled: later dates change none before them)."""
    return market_context_of_fold(market_features, splits, kept_fold(splits), clip).filter(pl.col("Date") <= as_of)


def _say_if_in_sample(splits: pl.DataFrame, as_of) -> None:
    """Log a warning where ``as_of`` is among the dates the kept model was fitted or chosen on (its
    fold's training and validation dates): its ranking there is in-sample, not a forecast."""
    fold = kept_fold(splits)
    seen = pl.concat([split_dates(splits, "train", fold), split_dates(splits, "val", fold)])
    if not seen.is_empty() and seen.min() <= as_of <= seen.max():
        log.warning("%s is among the dates the model was trained or chosen on (%s .. %s): it has seen the returns that followed, "
                    "so this ranking is in-sample, not a forecast", as_of, seen.min(), seen.max())  # fmt: skip


def _holds_the_training_dates(market_features: pl.DataFrame, train_dates: pl.Series, model: dict) -> None:
    """The market context is scaled with statistics of the training run's training dates, so the
    latest data must hold them: data of another source or folder (an inference run without the
    training run's ``source``), or a history fetched from a later start, would scale it otherwise."""
    missing = train_dates.filter(~train_dates.is_in(market_features["Date"].implode()))
    if missing.is_empty():
        return
    made = model.get("data_fingerprint") or {}
    trained_on = (f" (the model's: {made['source']} data, {made['stocks']} stocks, {made['first_date']} .. {made['last_date']})"
                  if made.get("source") else "")  # fmt: skip
    raise InferenceError(
        f"the latest data lacks {len(missing)} of the {len(train_dates)} training dates whose market statistics scale the model's "
        f"market context (e.g. {missing[0]}; it covers {market_features['Date'].min()} .. {market_features['Date'].max()}): it is "
        f"not the data the model was trained on{trained_on}. Run inference with the training run's source and raw settings "
        f"(e.g. --params source=files,raw.files_dir=...), or retrain on this data: {RETRAIN}"
    )


def inference_problem(params: dict) -> str | None:
    """What is wrong with the ``inference`` parameters (``as_of``, ``top``), or None: checked before
    any node runs, instead of where the ranking is made or its summary written."""
    if params.get("as_of") is not None and _date(params["as_of"]) is None:
        return f"inference.as_of must be a date (YYYY-MM-DD), or null for the data's last date; got {params['as_of']!r}"
    top = params.get("top", 10)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        return f"inference.top is how many names the summary shows at the top and at the bottom, a whole number >= 1; got {top!r}"
    return None


def _date(value):
    return pl.Series([str(value)]).str.to_date("%Y-%m-%d", strict=False)[0]


def _as_of(panel: pl.DataFrame, as_of) -> object:
    dates = panel["Date"]
    if as_of is None:
        as_of = dates.max()
    else:
        given, as_of = as_of, _date(as_of)
        if as_of is None:
            raise InferenceError(f"inference.as_of must be a date (YYYY-MM-DD), got {given!r}")
    traded = panel.filter((pl.col("Date") == as_of) & pl.col("traded")).height
    if traded == 0:
        first, last = dates.min(), dates.max()
        raise InferenceError(
            f"the data has no traded stock on {as_of} (it covers {first} .. {last}); pick a trading day with "
            "--params inference.as_of=YYYY-MM-DD, or fetch the latest data first"
        )
    before = panel.filter((pl.col("Date") < as_of) & pl.col("traded")).group_by("Date").len().sort("Date").tail(THIN_DAY_LOOKBACK)
    usual = float(before["len"].median()) if before.height else 0.0
    if traded < THIN_DAY_SHARE * usual:
        log.warning("%s has %d traded stocks against a median of %d over the %d dates before it: a part of a day's data? "
                    "The ranking covers only the stocks of %s; --params inference.as_of=YYYY-MM-DD ranks an earlier day",
                    as_of, traded, usual, before.height, as_of)  # fmt: skip
    return as_of


def ranking_summary(ranking: pl.DataFrame, model: dict, top: int = 10, one_day_share: float = 0.0) -> str:
    """A short markdown page: what was scored, the top and bottom names, the scores' spread;
    ``one_day_share``: how the 5-20 day scores lean on the 1-day one (``lean_on_one_day``)."""
    horizons = [c.removeprefix("score_") for c in ranking.columns if c.startswith("score_")]
    first = horizons[0]
    as_of = ranking["as_of"][0]
    fp = model.get("data_fingerprint") or {}
    lines = [
        f"# Ranking for the trading day after {as_of}",
        "",
        f"{ranking.height} stocks, every one that traded on {as_of}. Model: phase "
        f"{model['config']['phase']}, {kept_checkpoint(model['epoch'], model['best'])}, trained on "
        f"{fp.get('source', '?')} data `{fp.get('id', '?')}`. Scores are median forecasts of the return, per horizon"
        + (f"; each 5-20 day score leans on the 1-day one ({one_day_share:.0%} of its ranking's weight, `forecast.one_day_share`)."
           if one_day_share else "."),
        "",
    ]
    shown = ["Code", "Sector33Code", *[f"score_{h}" for h in horizons], f"q05_{first}", f"q95_{first}"]
    paths = [c for c in ranking.columns if c.startswith("part_") and c.endswith(f"_{first}")]
    if paths:  # where a name's score comes from: the network, its own features, its neighbours (they sum to the score)
        shown += paths
        lines += [f"The `part_` columns split each {first} score into the model's three paths (the network, the stock's own "
                  "features, its neighbours in the graph); they sum to the score.", ""]  # fmt: skip
    for title, rows in (("Top", ranking.head(top)), ("Bottom", ranking.tail(top).reverse())):
        lines += [f"## {title} {min(top, ranking.height)} by {first}", "", "| rank | " + " | ".join(shown) + " |",
                  "|---" * (len(shown) + 1) + "|"]  # fmt: skip
        for row in rows.iter_rows(named=True):
            cells = [f"{row[c]:+.4f}" if isinstance(row[c], float) else str(row[c]) for c in shown]
            lines.append(f"| {row[f'rank_{first}']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## The scores across stocks", "", "| horizon | 5% | 25% | median | 75% | 95% |", "|---|---|---|---|---|---|"]
    for h in horizons:
        q = np.quantile(ranking[f"score_{h}"].to_numpy(), [0.05, 0.25, 0.5, 0.75, 0.95])
        lines.append(f"| {h} | " + " | ".join(f"{v:+.4f}" for v in q) + " |")
    return "\n".join(lines) + "\n"
