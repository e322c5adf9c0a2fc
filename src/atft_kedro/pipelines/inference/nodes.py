"""inference nodes: the latest data through data_engineering's own steps, then one library call."""

from __future__ import annotations

import logging

import polars as pl

from atft_kedro.evaluation.report import kept_checkpoint
from atft_kedro.graph.store import GraphSet
from atft_kedro.inference import InferenceError, latest_ranking, ranking_summary
from atft_kedro.provenance import check_built_from
from atft_kedro.tracking import load_logged_model
from atft_kedro.training.predict import one_day_share

log = logging.getLogger(__name__)


PARAMETERS = ("as_of", "top", "mlflow_run_id")  # the keys of `inference` in conf/base/parameters_inference.yml


def rank_latest(
    model: dict,
    panel: pl.DataFrame,
    features: pl.DataFrame,
    market_features: pl.DataFrame,
    feature_manifest: list[dict],
    splits: pl.DataFrame,
    graphs: GraphSet,
    data_fingerprint: dict,
    normalisation: dict,
    params: dict,
    forecast: dict | None = None,
):
    """-> ranking (csv), ranking (parquet), summary (markdown), each named after the as-of date.
    ``graphs`` (the training run's) gives the graph configuration the model was trained with;
    ``forecast`` (the ``forecast`` parameters) how its long horizons lean on the 1-day forecast. With
    ``inference.mlflow_run_id`` the model is the one that MLflow run logged, not the catalog's.
    The model and the graphs must be of the data whose splits the catalog holds
    (``data_fingerprint``): the market context is scaled with those splits' training dates."""
    if params.get("mlflow_run_id"):
        model = _logged_model(params["mlflow_run_id"])
        log.info("model from MLflow run %s (phase %d, %s)", params["mlflow_run_id"], model["config"]["phase"], kept_checkpoint(model["epoch"], model["best"]))
    check_built_from(data_fingerprint, model=model.get("data_fingerprint"), graphs=graphs.data_fingerprint)
    share = one_day_share(forecast)
    ranking = latest_ranking(model, panel, features, market_features, feature_manifest, splits, graphs.config,
                             normalisation["clip"], params.get("as_of"), normalisation.get("rank_groups", ()), share)  # fmt: skip
    as_of = ranking["as_of"][0]
    name = f"ranking_{as_of}"
    top = ranking.row(0, named=True)
    log.info("ranking for the trading day after %s: %d stocks; first %s (1d score %+.4f)", as_of, ranking.height, top["Code"], top["score_1d"])
    return {name: ranking}, {name: ranking}, {name: ranking_summary(ranking, model, params.get("top", 10), share)}


def _logged_model(run_id: str) -> dict:
    """The model MLflow run ``run_id`` logged; a run MLflow does not have, or one without a logged
    model, is an ``InferenceError`` that says where it looked."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return load_logged_model(run_id)
    except MlflowException as error:
        raise InferenceError(
            f"inference.mlflow_run_id={run_id}: no logged model of that run in the MLflow store {mlflow.get_tracking_uri()} "
            f"({' '.join(str(error).split())}); `mlflow ui --backend-store-uri sqlite:///mlflow.db` lists the runs"
        ) from None
