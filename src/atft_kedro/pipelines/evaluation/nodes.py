"""evaluation nodes: typed config in, one library call, result out."""

from __future__ import annotations

import logging

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from atft_kedro.evaluation import plots
from atft_kedro.evaluation.blend import chosen_weights
from atft_kedro.evaluation.evaluate import BASELINES, EvaluationConfig, evaluate_predictions
from atft_kedro.evaluation.importance import ALL_FEATURES, ShuffledColumns, feature_groups, group_importance
from atft_kedro.evaluation.report import cleaned, markdown_report
from atft_kedro.features.builders import stock_feature_names
from atft_kedro.features.splits import split_dates
from atft_kedro.graph.store import GraphSet
from atft_kedro.provenance import StaleArtifactError, check_built_from
from atft_kedro.training.checkpoints import CheckpointStore, model_from_checkpoint
from atft_kedro.training.config import TrainConfig
from atft_kedro.training.data import DateDataset, TrainingArrays, fold_arrays, split_indices
from atft_kedro.training.predict import lean_on_one_day, one_day_share, predict

log = logging.getLogger(__name__)


def predict_test(model: dict, training_arrays: TrainingArrays, graphs: GraphSet, splits: pl.DataFrame, model_input: pl.DataFrame,
                 data_fingerprint: dict | None = None, checkpoints: CheckpointStore | None = None,
                 market_features: pl.DataFrame | None = None, normalisation: dict | None = None, forecast: dict | None = None,
                 parts: bool = True, label: str = "") -> pl.DataFrame:  # fmt: skip
    """The best model's median forecasts on every test date, dropout off, and their additive paths
    (``part_{path}_{h}``), beside the realised returns (``model_input``'s targets: the arrays' may be
    the neutral ones training used). With ``data_fingerprint`` (the node always has it), the model,
    arrays and graphs must be of that data. Walk-forward (``splits.n_folds > 1``): each fold's test
    dates by that fold's best checkpoint of the model's phase, with a ``fold`` column. ``forecast``
    (the ``forecast`` parameters): each long horizon leans on the 1-day forecast by
    ``one_day_share`` (``lean_on_one_day``; None: the heads as they are). ``label``: what the log says
    these forecasts are, after their count."""
    return _predict_split("test", model, training_arrays, graphs, splits, model_input, data_fingerprint, checkpoints, market_features,
                          normalisation, parts, label=label, share=one_day_share(forecast))  # fmt: skip


def predict_validation(model: dict, training_arrays: TrainingArrays, graphs: GraphSet, splits: pl.DataFrame, model_input: pl.DataFrame,
                       data_fingerprint: dict | None = None, checkpoints: CheckpointStore | None = None,
                       market_features: pl.DataFrame | None = None, normalisation: dict | None = None,
                       forecast: dict | None = None) -> pl.DataFrame:  # fmt: skip
    """``predict_test``'s forecasts and paths on the validation dates (walk-forward: each fold's
    validation block by that fold's model), so the report can set what each path adds on validation,
    where choices are made, beside what it adds on test."""
    return _predict_split("val", model, training_arrays, graphs, splits, model_input, data_fingerprint, checkpoints, market_features,
                          normalisation, parts=True, share=one_day_share(forecast))  # fmt: skip


def _predict_split(split: str, model: dict, training_arrays: TrainingArrays, graphs: GraphSet, splits: pl.DataFrame, model_input: pl.DataFrame,
                   data_fingerprint: dict | None, checkpoints: CheckpointStore | None, market_features: pl.DataFrame | None,
                   normalisation: dict | None, parts: bool, moved: tuple | None = None, last: int | None = None,
                   label: str = "", share: float = 0.0) -> pl.DataFrame:  # fmt: skip
    if data_fingerprint is not None:
        check_built_from(data_fingerprint, graphs=graphs.data_fingerprint, training_arrays=training_arrays.data_fingerprint,
                         model=model.get("data_fingerprint"))  # fmt: skip
    folds = sorted(splits["fold"].unique())
    if len(folds) == 1:
        return _stamped(lean_on_one_day(_predict_fold(model, training_arrays, graphs, splits, 0, model_input, split, parts, moved, last, label),
                                        share), model)  # fmt: skip
    phase = model["config"]["phase"]
    frames = [
        _predict_fold(checkpoints.fold(f).load(phase, "best"), fold_arrays(training_arrays, splits, f, market_features, normalisation),
                      graphs, splits, f, model_input, split, parts, moved, last, label).with_columns(pl.lit(f, pl.Int32).alias("fold"))
        for f in folds
    ]  # fmt: skip
    return _stamped(lean_on_one_day(pl.concat(frames), share), model)


def _stamped(predictions: pl.DataFrame, model: dict) -> pl.DataFrame:
    """The model the predictions come from (``model_id``: its phase, epoch and save time), so the
    evaluation can tell predictions of another model."""
    return predictions.with_columns(pl.lit(_model_id(model)).alias("model_id"))


def _model_id(model: dict) -> str:
    return f"phase {model['config']['phase']} epoch {model['epoch']} saved {model.get('saved_at')}"


def _check_made_by(model: dict, name: str, made: pl.DataFrame) -> None:
    """Forecasts ``made`` (named ``name``) must be the catalog's ``model``'s (their ``model_id``)."""
    ids = set(made["model_id"].unique()) if "model_id" in made.columns else {"no model_id"}
    if ids != {_model_id(model)}:
        raise StaleArtifactError(
            f"the {name} were made by another model ({', '.join(sorted(ids))}) than the catalog's "
            f"({_model_id(model)}). Rebuild: kedro run --pipelines evaluation"
        )


def _predict_fold(model: dict, arrays: TrainingArrays, graphs: GraphSet, splits: pl.DataFrame, fold: int, model_input: pl.DataFrame,
                  split: str = "test", parts: bool = False, moved: tuple | None = None, last: int | None = None,
                  label: str = "") -> pl.DataFrame:  # fmt: skip
    """The model's forecasts on every date of one split of one fold (``last``: on its last ``last``
    dates only), beside the realised returns; with ``moved`` = (columns, seed), those feature
    columns moved between stocks (``ShuffledColumns``)."""
    net = model_from_checkpoint(model, "the catalog's model checkpoint")
    train_cfg = TrainConfig(**model["config"]["train"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    idx = split_indices(arrays, splits, split, fold)
    idx = idx if last is None else idx[-last:]
    dataset = DateDataset(arrays, graphs, idx, train_cfg.window) if moved is None else ShuffledColumns(arrays, graphs, idx, train_cfg.window, *moved)
    preds = predict(net.to(device), dataset, train_cfg, device, parts=parts)
    if moved is None:
        log.info("phase %d model%s: predictions for %d %s dates%s", model["config"]["phase"], f", fold {fold}" if fold else "", len(idx), split,
                 f", {label}" if label else "")  # fmt: skip
    targets = [c for c in preds.columns if c.startswith("target_")]
    realised = model_input.select("Date", "Code", *targets)
    return preds.drop(targets).join(realised, on=["Date", "Code"], how="left", maintain_order="left")


def feature_importance(model: dict, training_arrays: TrainingArrays, graphs: GraphSet, splits: pl.DataFrame, model_input: pl.DataFrame,
                       validation_predictions: pl.DataFrame, feature_manifest: list[dict], params: dict, data_fingerprint: dict | None = None,
                       checkpoints: CheckpointStore | None = None, market_features: pl.DataFrame | None = None,
                       normalisation: dict | None = None, forecast: dict | None = None):  # fmt: skip
    """What the model's ranking rests on: its validation forecasts made again with each feature
    group moved between stocks (``importance_seed``'s permutations), scored against
    ``validation_predictions``, which must be the same model's
    -> ({"split": "val", "seed", "groups": {group: {"features": n, h: {"rank_ic_moved", "worth"}}}},
    the plot); the last group, ``ALL_FEATURES``, moves every feature at once. One validation pass per
    group (walk-forward: per fold, by each fold's model) over every validation date, or the last
    ``importance_dates`` of each fold; 0: none, the document says it is off (``"off"``, no groups)."""
    _check_made_by(model, "validation_predictions", validation_predictions)
    seed, cfg = int(params["importance_seed"]), EvaluationConfig.from_params(params)
    last = cfg.importance_dates
    if last == 0:
        log.info("feature importance off (evaluation.importance_dates: 0)")
        document = {"split": "val", "seed": seed, "dates": 0, "off": "evaluation.importance_dates: 0", "groups": {}}
        return document, plots.plot_feature_importance(document)
    groups = feature_groups(feature_manifest, training_arrays.feature_names)
    groups[ALL_FEATURES] = np.arange(len(training_arrays.feature_names))  # the scale: what the inputs are worth together
    moved, share = {}, one_day_share(forecast)
    for group, columns in tqdm(groups.items(), desc="feature groups moved", unit="group"):
        moved[group] = _predict_split("val", model, training_arrays, graphs, splits, model_input, data_fingerprint, checkpoints, market_features,
                                      normalisation, parts=False, moved=(columns, seed), last=last, share=share)  # fmt: skip
    worth = group_importance(validation_predictions, moved, cfg.min_stocks)
    for group, by_h in sorted(worth.items(), key=lambda g: -next(iter(g[1].values()))["worth"]["mean"]):
        log.info("validation RankIC lost with %s moved between stocks: %s", group,
                 "; ".join(f"{h} {w['worth']['mean']:+.4f} [{w['worth']['ci95_low']:+.4f}, {w['worth']['ci95_high']:+.4f}]" for h, w in by_h.items()))  # fmt: skip
    dates = next(iter(moved.values()))["Date"].n_unique()
    document = cleaned({"split": "val", "seed": seed, "dates": dates, "groups": {g: {"features": len(groups[g]), **worth[g]} for g in groups}})
    return document, plots.plot_feature_importance(document)


def predict_test_random_graph(model: dict, training_arrays: TrainingArrays, graphs: GraphSet, splits: pl.DataFrame,
                              model_input: pl.DataFrame, params: dict, data_fingerprint: dict | None = None,
                              checkpoints: CheckpointStore | None = None, market_features: pl.DataFrame | None = None,
                              normalisation: dict | None = None, forecast: dict | None = None) -> pl.DataFrame:  # fmt: skip
    """The same forecasts (without their paths) on the graphs with their endpoints redrawn at random (``graph_ablation``)."""
    shuffled = graphs.with_random_endpoints(params["graph_ablation_seed"])
    return predict_test(model, training_arrays, shuffled, splits, model_input, data_fingerprint, checkpoints, market_features, normalisation,
                        forecast, parts=False, label="on the graphs with their endpoints redrawn at random (the graph ablation)")  # fmt: skip


def evaluate(
    predictions: pl.DataFrame,
    random_graph_predictions: pl.DataFrame,
    features: pl.DataFrame | pl.LazyFrame,
    model_input: pl.DataFrame,
    oracle_returns: pl.DataFrame,
    splits: pl.DataFrame,
    feature_manifest: list[dict],
    source: str,
    params: dict,
    model: dict | None = None,
    data_fingerprint: dict | None = None,
    validation_predictions: pl.DataFrame | None = None,
    feature_importance: dict | None = None,
    forecast: dict | None = None,
):
    """-> metrics (SPEC 7), report (markdown), cumulative / rolling IC / quantile / by-horizon / forecast-parts plots. ``model`` and
    ``data_fingerprint`` say what the metrics describe (``metrics["provenance"]``); predictions that
    are not of this data's test split stop the node. ``validation_predictions`` (``predict_validation``):
    what each path of the forecast adds on validation too; ``feature_importance`` (the node's): what
    each feature group is worth to the ranking on validation, in the metrics and the report;
    ``forecast`` (the ``forecast`` parameters the predictions were made with): the report says how
    the long horizons lean on the 1-day forecast, and ``metrics["provenance"]`` records it.
    Of ``features`` only the baselines' columns are read (``baseline_frame`` takes them with
    ``baseline_features``; the catalog loads it lazily: at the full size the whole table is 1.7 GB)."""
    if data_fingerprint is not None and model is not None:
        check_built_from(data_fingerprint, model=model.get("data_fingerprint"))
    _check_covers_the_test_split(predictions, splits)
    share = one_day_share(forecast)
    if model is not None:
        made_by = {"predictions": predictions, "random_graph_predictions": random_graph_predictions, "validation_predictions": validation_predictions}
        for name, made in made_by.items():
            if made is not None:
                _check_made_by(model, name, made)
    cfg = EvaluationConfig.from_params(params)
    result = evaluate_predictions(predictions, random_graph_predictions, features, model_input, oracle_returns, splits,
                                  stock_feature_names(feature_manifest), cfg, validation_predictions)  # fmt: skip
    for h, scorers in result.document["horizons"].items():
        for name, m in scorers.items():
            used, skipped = result.counts[h][name]
            log.info("%s %-13s RankIC %s  LS Sharpe %s (before costs %s)  (%d dates, %d skipped)", h, name, m["rank_ic"], m["ls_sharpe"],
                     m["ls_sharpe_gross"], used, skipped)  # fmt: skip
        p = result.document["paired"][h]
        log.info("%s model - %s: %s [%s, %s]", h, p["best_baseline"], p["mean"], p["ci95_low"], p["ci95_high"])
        p = result.document["validation_pick"][h]
        log.info("%s model - %s (validation's pick): %s [%s, %s]", h, p["baseline"], p["mean"], p["ci95_low"], p["ci95_high"])
        b = result.document.get("blend", {}).get(h)
        if b:
            log.info("%s blend (LightGBM's weight %s, on validation) - model: %s [%s, %s]", h,
                     chosen_weights(b["chosen"]), b["minus_model"]["mean"],
                     b["minus_model"]["ci95_low"], b["minus_model"]["ci95_high"])  # fmt: skip
        paths = result.document.get("forecast_parts", {}).get(h)
        if paths:  # the values as the lines above give theirs (metrics.json's, rounded)
            log.info("%s what each path of the forecast adds: %s", h,
                     "; ".join(f"{path} {p['adds']['mean']} [{p['adds']['ci95_low']}, {p['adds']['ci95_high']}]" for path, p in paths.items()))  # fmt: skip
    if feature_importance is not None:
        result.document["feature_importance"] = feature_importance
    if model is not None:
        result.document["provenance"] = {**provenance(model, data_fingerprint), "one_day_share": share}
    dates = predictions["Date"]
    context = {"provenance": result.document.get("provenance"), "source": source, "n_dates": dates.n_unique(), "start": dates.min(), "end": dates.max(),
               "n_stocks": predictions["Code"].n_unique(), "quantile": cfg.backtest.quantile, "hold_quantile": cfg.backtest.hold_quantile,
               "cost_bp": cfg.backtest.cost_bp, "one_day_share": share,
               "ls_periods": {h: len(curves["model"].net) for h, curves in result.curves.items()}}  # fmt: skip
    first = next(iter(result.document["horizons"]))
    quantile_scores = [f"pred_{first}", f"ridge_{first}", f"lightgbm_{first}", "momentum_20d"]
    quantile_scores += [f"oracle_{first}"] if f"oracle_{first}" in result.frame.columns else []
    daily = {name: (d.dates, d.rank_ic) for name, d in result.daily[first].items()}
    return (
        result.document,
        markdown_report(result.document, result.counts, context),
        plots.plot_cumulative(result.curves[first], first),
        plots.plot_rolling_ic(daily, first),
        plots.plot_quantile_returns(result.frame, quantile_scores, f"target_{first}"),
        plots.plot_rank_ic_by_horizon(result.daily, result.document["paired"], ("model", *BASELINES, *(["blend"] if "blend" in result.document else [])),
                                      result.document["validation_pick"]),  # fmt: skip
        plots.plot_forecast_parts(result.document.get("forecast_parts", {}), {h: m["model"]["rank_ic"] for h, m in result.document["horizons"].items()}),
    )


def provenance(model: dict, data_fingerprint: dict | None) -> dict:
    """What a metrics document describes: the data, and which checkpoint of which phase."""
    return {
        "data": data_fingerprint,
        "model": {
            "phase": model["config"]["phase"], "epoch": model["epoch"], "validation": model["best"],
            "saved_at": model.get("saved_at"), "seed": model["config"]["train"].get("seed"),
            "starts": model.get("starts", {}),  # where validation started the linear paths: "phase 2, neighbour skip" -> horizon -> start
        },
    }  # fmt: skip


def _check_covers_the_test_split(predictions: pl.DataFrame, splits: pl.DataFrame) -> None:
    test = split_dates(splits, "test", fold=None)
    made = predictions["Date"].unique()
    if made.is_empty() or not made.is_in(test.implode()).all():
        outside = made.filter(~made.is_in(test.implode())).len()
        raise StaleArtifactError(
            f"the predictions ({made.len()} dates, {outside} of them outside the test split) are not of the current "
            f"splits' test split ({test.len()} dates, {test.min()} .. {test.max()}): they were made from other data. "
            "Rebuild: kedro run --pipelines evaluation"
        )
