"""Every scorer on the test split in one call (SPEC section 7): what the evaluation node reports.

For each horizon: the model, 20-day momentum, 1-day reversal, a ridge and a LightGBM model on the
same features (tuned on validation only) and, on the synthetic market, the oracle, each with the
prediction metrics, a long-short backtest and its RankIC without the market and sectors. Then two
paired comparisons, per date on the same stocks, so that the noise the scorers share cancels:

* ``paired``: the model's daily RankIC minus the best baseline's (the baseline with the highest
  test RankIC at that horizon, the hardest comparison), with a 95% interval whose standard error
  is Newey-West at lag h - 1 (h-day targets of neighbouring dates overlap).
* ``validation_pick``: the same difference against the baseline with the best validation RankIC
  at that horizon: the one a researcher would have deployed, chosen the way the model's checkpoint
  is. The best on test is chosen after the fact among four noisy scores, so it sits above what any
  of them can be expected to give again (most at 10-20 days, where a test split holds a few
  independent periods).
* ``graph_ablation``: the same trained model's RankIC with its graph and with the graph's endpoints
  redrawn at random (same degrees and edge attributes), and their paired difference: what the
  graph is worth to this model. A model trained without the GAT gets the same score from both.

With the model's validation forecasts and ``evaluation.blend: true`` (an option), ``blend``: the
model and LightGBM blended per date (each date's forecasts as rank normal scores), LightGBM's weight
chosen on validation (``blend.py``), scored as a scorer of its own, and the blend minus each of the two, per date. Not a baseline: the
best baseline and the validation pick stay among the four.

``forecast_correlation``: how alike each scorer's ranking is to the model's, the Spearman
correlation of the two forecasts over each test date's stocks, averaged over the dates. Two
forecasters that rank alike make one bet whatever their RankICs; two that do not are where a blend
can rank above both.

And, where the predictions carry the median's additive paths (``part_{path}_{h}``: the network, the
linear skip on the stock's own features, the graph's linear path), ``forecast_parts``: each path's
share of the forecast's spread, its RankIC alone, the forecast's without it, and what it adds (the
forecast's daily RankIC minus the forecast's without it, with the same interval): which part of the
model the ranking comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from atft_kedro.checks import whole_number
from atft_kedro.evaluation.backtest import BacktestConfig, BacktestResult, long_short_backtest
from atft_kedro.evaluation.baselines import LIQUIDITY, LIQUIDITY_BUCKETS, BaselineConfig, baseline_frame
from atft_kedro.evaluation.blend import blend
from atft_kedro.evaluation.metrics import (DailyScores, daily_scores, neutral_scores, overlap_lag, paired_difference, rank_ic_by_bucket,
                                          selection_of_the_best, summarise, with_buckets)
from atft_kedro.evaluation.report import metrics_document

BASELINES = ("momentum_20d", "reversal_1d", "ridge", "lightgbm")
# the keys of `evaluation` in conf/base/parameters_evaluation.yml (`lightgbm`'s are LightGBMConfig's fields)
PARAMETERS = ("quantile", "hold_quantile", "cost_bp", "min_stocks", "ridge_alphas", "lightgbm", "blend", "blend_weights", "graph_ablation_seed", "importance_seed",
              "importance_dates")


@dataclass(frozen=True)
class EvaluationConfig:
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    blend_weights: tuple[float, ...] = ()  # LightGBM's weights in the blend, validation picks one; () : no blend (the default)
    importance_dates: int | None = None  # the feature importance's validation dates: None every one, n the last n of each fold, 0 none (off)

    def __post_init__(self):
        if not all(0 <= w <= 1 for w in self.blend_weights):
            raise ValueError(f"blend_weights are LightGBM's weights in the blend, each in [0, 1], got {list(self.blend_weights)!r}")
        if self.importance_dates is not None and not whole_number(self.importance_dates, 0):
            raise ValueError(f"importance_dates is how many of the last validation dates the feature importance moves its groups on: "
                             f"null (every one), a whole number, or 0 (no feature importance), got {self.importance_dates!r}")  # fmt: skip

    @property
    def min_stocks(self) -> int:
        return self.backtest.min_stocks

    @classmethod
    def from_params(cls, params: dict) -> "EvaluationConfig":
        backtest = BacktestConfig(quantile=params["quantile"], cost_bp=params["cost_bp"], min_stocks=params["min_stocks"],
                                  hold_quantile=params.get("hold_quantile"))  # fmt: skip
        weights = tuple(float(w) for w in params["blend_weights"]) if params.get("blend") else ()  # evaluation.blend: false, no blend
        return cls(backtest, BaselineConfig.from_params(params), weights, params.get("importance_dates"))


@dataclass(frozen=True)
class Evaluation:
    document: dict  # metrics.json
    counts: dict  # [h][scorer] -> (dates used, dates skipped)
    curves: dict  # [h][scorer] -> BacktestResult
    daily: dict  # [h][scorer] -> DailyScores
    frame: pl.DataFrame  # predictions with every baseline's scores


def _scorer_columns(h: str, frame: pl.DataFrame) -> dict[str, str]:
    columns = {"model": f"pred_{h}", "momentum_20d": "momentum_20d", "reversal_1d": "reversal_1d",
               "ridge": f"ridge_{h}", "lightgbm": f"lightgbm_{h}"}  # fmt: skip
    if f"blend_{h}" in frame.columns:
        columns["blend"] = f"blend_{h}"
    if f"oracle_{h}" in frame.columns:
        columns["oracle"] = f"oracle_{h}"
    return columns


def evaluate_predictions(
    predictions: pl.DataFrame,
    random_graph_predictions: pl.DataFrame,
    features: pl.DataFrame | pl.LazyFrame,
    model_input: pl.DataFrame,
    oracle: pl.DataFrame,
    splits: pl.DataFrame,
    feature_names: list[str],
    cfg: EvaluationConfig,
    validation_predictions: pl.DataFrame | None = None,
) -> Evaluation:
    """Score the model's test ``predictions`` (Date, Code, pred_{h}, target_{h}) and every baseline;
    ``random_graph_predictions``: the same model's predictions on the graph with random endpoints;
    ``validation_predictions`` (with the paths): ``forecast_parts`` gets each path's scores on
    validation beside those on test, under "validation", and the model and LightGBM are blended
    (``blend``, with ``cfg.blend_weights``)."""
    horizons = [h[5:] for h in predictions.columns if h.startswith("pred_")]
    most = int(predictions.group_by("Date").len()["len"].max() or 0) if predictions.height else 0
    if most < cfg.min_stocks:  # no test date could be scored
        raise ValueError(f"the test dates have at most {most} stocks, fewer than evaluation.min_stocks ({cfg.min_stocks}), the stocks a "
                         f"date needs to be scored. For a universe this small run with --params evaluation.min_stocks={most}.")  # fmt: skip
    blending = validation_predictions is not None and bool(cfg.blend_weights)
    frame, fitted, lightgbm_val = baseline_frame(predictions, features, model_input, oracle, splits, feature_names, horizons, cfg.baselines,
                                                 validation_predictions if blending else None)  # fmt: skip
    table, neutral, counts, curves, daily, paired, picked, ablation, parts, blended, alike, liquid = ({} for _ in range(12))
    weights_chosen = {}  # per horizon, what the blend's validation chose
    for h in horizons:
        if blending:  # the model and LightGBM blended, LightGBM's weight chosen on validation (evaluation/blend.py)
            on_val = lightgbm_val.with_columns(validation_predictions.select(f"pred_{h}", f"target_{h}"))  # the same rows, in order
            column, weights_chosen[h] = blend(frame, on_val, h, cfg.blend_weights, cfg.min_stocks)
            frame = frame.with_columns(pl.Series(f"blend_{h}", column))
        table[h], neutral[h], counts[h], curves[h], daily[h] = {}, {}, {}, {}, {}
        columns = _scorer_columns(h, frame)
        for name, col in columns.items():
            d = daily_scores(frame, col, f"target_{h}", cfg.min_stocks)
            bt: BacktestResult = long_short_backtest(frame, col, f"target_{h}", int(h[:-1]), cfg.backtest)
            table[h][name] = {**summarise(d), **bt.summary()}
            neutral[h][name] = neutral_scores(frame, col, f"target_{h}", "beta_60d", "Sector33Code", cfg.min_stocks)
            counts[h][name], curves[h][name], daily[h][name] = (len(d.ic), d.skipped_dates), bt, d
        alike[h] = {name: summarise(daily_scores(frame, columns["model"], col, cfg.min_stocks))["rank_ic"]
                    for name, col in columns.items() if name != "model"}  # fmt: skip
        lag = overlap_lag(h)
        best = max(BASELINES, key=lambda b: _or_low(table[h][b]["rank_ic"]))
        paired[h] = {"best_baseline": best, "lag": lag, **paired_difference(daily[h]["model"], daily[h][best], lag),
                     "selection": selection_of_the_best(daily[h]["model"], [daily[h][b] for b in BASELINES], h)}  # fmt: skip
        picked[h] = _against_validation_picks(frame, fitted, h, daily[h], cfg.min_stocks)
        shuffled = daily_scores(random_graph_predictions, f"pred_{h}", f"target_{h}", cfg.min_stocks)
        ablation[h] = {"with_graph": table[h]["model"]["rank_ic"], "random_endpoints": summarise(shuffled)["rank_ic"],
                       "difference": paired_difference(daily[h]["model"], shuffled, lag)}  # fmt: skip
        parts[h] = forecast_parts(frame, h, daily[h]["model"], cfg.min_stocks)
        if LIQUIDITY in frame.columns:  # does each ranking hold among the stocks a book trades in size?
            liquid[h] = _by_liquidity(frame, columns, h, cfg)
        if blending:
            blended[h] = {"chosen": weights_chosen[h], "minus_model": paired_difference(daily[h]["blend"], daily[h]["model"], lag),
                          "minus_lightgbm": paired_difference(daily[h]["blend"], daily[h]["lightgbm"], lag)}  # fmt: skip
        if validation_predictions is not None and parts[h]:
            on_val = forecast_parts(validation_predictions, h, daily_scores(validation_predictions, f"pred_{h}", f"target_{h}", cfg.min_stocks),
                                    cfg.min_stocks)  # fmt: skip
            for path, scores in parts[h].items():
                scores["validation"] = on_val.get(path)
    folds = None
    if "fold" in frame.columns:  # walk-forward: the metrics above pool every fold's test dates; each fold's own beside them
        folds = {
            f"fold{fold}": {h: {name: summarise(daily_scores(frame.filter(pl.col("fold") == fold), col, f"target_{h}", cfg.min_stocks))["rank_ic"]
                                for name, col in _scorer_columns(h, frame).items()} for h in horizons}
            for fold in sorted(frame["fold"].unique())
        }  # fmt: skip
    parts = {h: p for h, p in parts.items() if p} or None
    document = metrics_document(table, neutral, paired=paired, validation_pick=picked, graph_ablation=ablation, forecast_parts=parts,
                                baselines=fitted, folds=folds, blend=blended or None, forecast_correlation=alike,
                                by_liquidity=_liquidity_document(liquid) if liquid else None)  # fmt: skip
    return Evaluation(document, counts, curves, daily, frame)


def _by_liquidity(frame: pl.DataFrame, columns: dict[str, str], h: str, cfg: EvaluationConfig) -> dict:
    """Each scorer at ``h`` within each date's liquidity buckets (by ``LIQUIDITY``, as known that
    day): its RankIC in each, and the long-short book's Sharpe after costs with the least liquid
    bucket left out of the universe (the book a fund that cannot trade the illiquid tail holds)."""
    bucketed = with_buckets(frame, LIQUIDITY, len(LIQUIDITY_BUCKETS), f"target_{h}")
    tradable = bucketed.filter(pl.col("_bucket") < len(LIQUIDITY_BUCKETS) - 1)
    return {"rank_ic": rank_ic_by_bucket(bucketed, columns, f"target_{h}", len(LIQUIDITY_BUCKETS), cfg.min_stocks),
            "ls_sharpe": {name: long_short_backtest(tradable, col, f"target_{h}", int(h[:-1]), cfg.backtest).summary()["ls_sharpe"]
                          for name, col in columns.items()}}  # fmt: skip


def _liquidity_document(liquid: dict) -> dict:
    """``by_liquidity`` in metrics.json: the buckets, then per horizon each scorer's RankIC in each
    bucket and its long-short Sharpe with the least liquid bucket left out."""
    return {"feature": LIQUIDITY, "buckets": LIQUIDITY_BUCKETS, "rank_ic": {h: v["rank_ic"] for h, v in liquid.items()},
            "ls_sharpe_without_least_liquid": {h: v["ls_sharpe"] for h, v in liquid.items()}}  # fmt: skip


def forecast_parts(frame: pl.DataFrame, h: str, forecast: DailyScores, min_stocks: int) -> dict[str, dict]:
    """What each additive path of the median forecast (``part_{path}_{h}`` columns, from
    ``predict(..., parts=True)``) does for its ranking at ``h``, ``forecast`` being the forecast's
    own daily RankIC -> {path: {"spread": the mean over dates of the path's cross-sectional standard
    deviation over the forecast's, "rank_ic_alone", "rank_ic_without": the forecast less the path,
    "adds": the forecast's daily RankIC minus that of the forecast without the path, with its
    Newey-West interval at lag h - 1}}. Paths that are 0 everywhere (absent or off in the model's
    phase) are left out; {} when the frame has no paths."""
    target, pred, lag = f"target_{h}", f"pred_{h}", overlap_lag(h)
    columns = {c.removeprefix("part_").removesuffix(f"_{h}"): c for c in frame.columns if c.startswith("part_") and c.endswith(f"_{h}")}
    columns = {path: c for path, c in columns.items() if frame[c].abs().max()}
    if not columns:
        return {}
    spread = frame.group_by("Date").agg(*[(pl.col(c).std() / pl.col(pred).std()).alias(path) for path, c in columns.items()])
    out = {}
    for path, c in columns.items():
        without = daily_scores(frame.with_columns((pl.col(pred) - pl.col(c)).alias("without")), "without", target, min_stocks)
        share = spread[path]
        out[path] = {"spread": share.filter(share.is_finite()).mean(), "rank_ic_alone": summarise(daily_scores(frame, c, target, min_stocks))["rank_ic"],
                     "rank_ic_without": summarise(without)["rank_ic"], "adds": paired_difference(forecast, without, lag)}  # fmt: skip
    return out


def validation_picks(fitted: dict, h: str) -> dict:
    """The baseline with the best validation RankIC at ``h`` and that RankIC, from what
    ``baseline_frame`` reports (``fitted``): {None: (name, RankIC)}, or walk-forward {fold: ...},
    each fold's from its own validation block, so that no test block's pick reads a later date."""
    by_fold = fitted[BASELINES[0]][h]
    folds = [None] if "val_rank_ic" in by_fold else [int(f.removeprefix("fold")) for f in by_fold]
    picks = {}
    for fold in folds:
        on_val = {b: (fitted[b][h] if fold is None else fitted[b][h][f"fold{fold}"])["val_rank_ic"] for b in BASELINES}
        best = max(BASELINES, key=lambda b: _or_low(on_val[b]))
        picks[fold] = (best, on_val[best])
    return picks


def _against_validation_picks(frame: pl.DataFrame, fitted: dict, h: str, scored: dict[str, DailyScores], min_stocks: int) -> dict:
    """The model's daily RankIC minus the validation pick's (``validation_picks``; walk-forward, each
    test block's own fold's; ``scored``: every scorer's daily RankIC at ``h``) -> the pick ("per
    fold" where the folds differ, each under "folds"), its validation RankIC (the folds' mean), its
    test RankIC and the paired difference."""
    picks, lag = validation_picks(fitted, h), overlap_lag(h)
    if None in picks:
        daily = scored[picks[None][0]]
    else:  # each test block's rows scored by its own fold's pick
        columns, expr = _scorer_columns(h, frame), pl.lit(None, dtype=pl.Float64)
        for fold, (name, _) in picks.items():
            expr = pl.when(pl.col("fold") == fold).then(pl.col(columns[name])).otherwise(expr)
        daily = daily_scores(frame.select("Date", expr.alias("picked"), f"target_{h}"), "picked", f"target_{h}", min_stocks)
    names = {name for name, _ in picks.values()}
    out = {"baseline": names.pop() if len(names) == 1 else "per fold", "val_rank_ic": float(np.mean([v for _, v in picks.values()])),
           "rank_ic": summarise(daily)["rank_ic"], "lag": lag, **paired_difference(scored["model"], daily, lag)}  # fmt: skip
    if None not in picks:
        out["folds"] = {f"fold{fold}": {"baseline": name, "val_rank_ic": v} for fold, (name, v) in picks.items()}
    return out


def _or_low(x: float) -> float:
    return x if x == x else -1.0  # NaN (no scored date) ranks last


__all__ = ["BASELINES", "DailyScores", "Evaluation", "EvaluationConfig", "evaluate_predictions"]
