"""evaluation nodes."""

from __future__ import annotations

import logging

import polars as pl
import torch

from atft_kedro.evaluation import plots
from atft_kedro.evaluation.backtest import BacktestConfig, long_short_backtest
from atft_kedro.evaluation.baselines import baseline_frame
from atft_kedro.evaluation.metrics import daily_scores, neutral_scores, summarise
from atft_kedro.evaluation.report import markdown_report, metrics_document
from atft_kedro.graph.store import GraphSet
from atft_kedro.model import ATFTGATFAN, ModelConfig
from atft_kedro.training.data import HORIZON_KEYS, DateDataset, TrainingArrays, split_indices
from atft_kedro.training.loop import TrainConfig, load_weights, predict

log = logging.getLogger(__name__)


def predict_test(model: dict, training_arrays: TrainingArrays, graphs: GraphSet, splits: pl.DataFrame, model_input: pl.DataFrame) -> pl.DataFrame:
    """The best model's median forecasts on every test date, dropout off, beside the realised returns
    (``model_input``'s targets: the arrays' may be the neutral ones training used)."""
    cfg = ModelConfig(**{**model["config"]["model"], "horizons": tuple(model["config"]["model"]["horizons"]), "gat_backend": "auto"})
    net = ATFTGATFAN(cfg)
    load_weights(net, model["model"], "the catalog's model checkpoint", f"phase={model['config']['phase']}")
    train_cfg = TrainConfig(**model["config"]["train"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net.to(device)
    test_idx = split_indices(training_arrays, splits, "test")
    preds = predict(net, DateDataset(training_arrays, graphs, test_idx, train_cfg.window), train_cfg, device)
    log.info("phase %d model: predictions for %d test dates", model["config"]["phase"], len(test_idx))
    targets = [c for c in preds.columns if c.startswith("target_")]
    realised = model_input.select("Date", "Code", *targets)
    return preds.drop(targets).join(realised, on=["Date", "Code"], how="left", maintain_order="left")


def evaluate(
    predictions: pl.DataFrame,
    features: pl.DataFrame,
    model_input: pl.DataFrame,
    oracle_returns: pl.DataFrame,
    splits: pl.DataFrame,
    feature_manifest: list[dict],
    source: str,
    params: dict,
):
    """-> metrics (SPEC 7 shape, plus each scorer's RankIC without the market and sectors), report
    (markdown), cumulative / rolling IC / quantile plots."""
    horizons = [h for h in HORIZON_KEYS if f"pred_{h}" in predictions.columns]
    names = [m["name"] for m in feature_manifest if not m["date_constant"]]
    frame = baseline_frame(predictions, features, model_input, oracle_returns, splits, names, horizons, params["ridge_alpha"])
    bt_cfg = BacktestConfig(quantile=params["quantile"], cost_bp=params["cost_bp"], min_stocks=params["min_stocks"])
    table, counts, curves, daily, neutral = {}, {}, {}, {}, {}
    for h in horizons:
        scorers = {"model": f"pred_{h}", "momentum_20d": "momentum_20d", "reversal_1d": "reversal_1d", "ridge": f"ridge_{h}"}
        if f"oracle_{h}" in frame.columns:
            scorers["oracle"] = f"oracle_{h}"
        table[h], counts[h], curves[h], daily[h], neutral[h] = {}, {}, {}, {}, {}
        for name, col in scorers.items():
            d = daily_scores(frame, col, f"target_{h}", params["min_stocks"])
            bt = long_short_backtest(frame, col, f"target_{h}", int(h[:-1]), bt_cfg)
            table[h][name] = {**summarise(d), **bt.summary()}
            counts[h][name] = (len(d.ic), d.skipped_dates)
            curves[h][name], daily[h][name] = bt, (d.dates, d.rank_ic)
            neutral[h][name] = neutral_scores(frame, col, f"target_{h}", "beta_60d", "Sector33Code", params["min_stocks"])
            log.info("%s %-13s RankIC %.4f  LS Sharpe %.2f  (%d dates, %d skipped)", h, name,
                     table[h][name]["rank_ic"], table[h][name]["ls_sharpe"], len(d.ic), d.skipped_dates)  # fmt: skip
    document = metrics_document(table, neutral)
    dates = predictions["Date"]
    context = {"source": source, "n_dates": dates.n_unique(), "start": dates.min(), "end": dates.max(),
               "n_stocks": predictions["Code"].n_unique(), "quantile": bt_cfg.quantile, "cost_bp": bt_cfg.cost_bp}  # fmt: skip
    first = horizons[0]
    quantile_scores = ["pred_" + first, f"ridge_{first}", "momentum_20d"] + ([f"oracle_{first}"] if f"oracle_{first}" in frame.columns else [])
    return (
        document,
        markdown_report(document, counts, context),
        plots.plot_cumulative(curves[first], first),
        plots.plot_rolling_ic(daily[first], first),
        plots.plot_quantile_returns(frame, quantile_scores, f"target_{first}"),
    )
