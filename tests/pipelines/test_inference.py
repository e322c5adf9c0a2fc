"""The inference pipeline: the trained model on the latest date, nothing refitted, nothing after
the as-of date read."""

import polars as pl
import pytest
import torch

from atft_kedro.features.builders import build_features
from atft_kedro.features.panel import build_panel
from atft_kedro.inference import InferenceError, latest_ranking
from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory
from atft_kedro.training.checkpoints import CheckpointStore, model_from_checkpoint
from atft_kedro.training.config import TrainConfig
from atft_kedro.training.data import DateDataset
from atft_kedro.training.predict import lean_on_one_day, predict

from ..conftest import TINY_PARAMS

TRAINING = {"epochs": 1, "max_train_dates": 8, "min_stocks": 10,
            "model": {"d_model": 16, "temporal_heads": 2, "gat_heads": 2, "gat_layers": 1}}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tiny_pipeline, tmp_path_factory):
    """A whole research run on the tiny market (the same data as ``tiny_pipeline``), then inference."""
    params = project_parameters({**TINY_PARAMS, "training": TRAINING})
    store = CheckpointStore(tmp_path_factory.mktemp("checkpoints"))
    run = run_in_memory(["training"], params, inputs={**tiny_pipeline, "checkpoints": store})
    given = {k: v for k, v in {**tiny_pipeline, **run}.items() if k in ("model", "splits", "graphs", "data_fingerprint")}
    latest = run_in_memory(["inference"], params, inputs=given)
    return {**tiny_pipeline, **run, "params": params, "latest": latest}


def test_the_ranking_covers_every_stock_that_traded_on_the_last_date_as_the_model_scores_it(trained):
    files = trained["latest"]["ranking_parquet"]
    (name, ranking), = files.items()
    panel = trained["panel"]
    last = panel["Date"].max()
    assert name == f"ranking_{last}" and set(trained["latest"]["ranking_csv"]) == {name}
    traded = set(panel.filter((pl.col("Date") == last) & pl.col("traded"))["Code"])
    assert set(ranking["Code"]) == traded and ranking["traded"].all()  # a date's cross-section: the stocks that traded that day
    assert sorted(ranking["rank_1d"]) == list(range(1, ranking.height + 1))
    assert (ranking["q05_1d"] <= ranking["score_1d"]).all() and (ranking["score_1d"] <= ranking["q95_1d"]).all()
    # each name's liquidity as of the date, and its third among the ranked names (1: the most liquid)
    features = trained["features"].filter(pl.col("Date") == last).select("Code", "amihud_20d")
    assert ranking.select("Code", "amihud_20d").sort("Code").equals(features.filter(pl.col("Code").is_in(ranking["Code"].implode())).sort("Code"))
    thirds = ranking.group_by("liquidity_third").agg(pl.col("amihud_20d").min().alias("lo"), pl.col("amihud_20d").max().alias("hi"), pl.len()).sort("liquidity_third")
    assert thirds["liquidity_third"].to_list() == [1, 2, 3] and (thirds["hi"][:-1] < thirds["lo"][1:]).all()  # ordered, no overlap
    assert max(thirds["len"]) - min(thirds["len"]) <= 1
    # the slow way: the model on the training run's own arrays and graphs, at the last date
    arrays, model = trained["training_arrays"], trained["model"]
    window = TrainConfig(**model["config"]["train"]).window
    slow = predict(model_from_checkpoint(model), DateDataset(arrays, trained["graphs"], [len(arrays.dates) - 1], window),
                   TrainConfig(**model["config"]["train"]), torch.device("cpu"))  # fmt: skip
    share = trained["params"]["forecast"]["one_day_share"]
    assert share > 0  # the long horizons lean on the 1-day forecast as the evaluation's do
    slow = lean_on_one_day(slow, share)
    both = ranking.join(slow, on="Code")
    assert both.height == ranking.height
    for h in ("1d", "5d", "10d", "20d"):
        torch.testing.assert_close(both[f"score_{h}"].to_torch(), both[f"pred_{h}"].to_torch(), rtol=0, atol=1e-6)
        paths = sum(ranking[f"part_{path}_{h}"] for path in ("network", "own", "neighbours"))  # where each score comes from
        torch.testing.assert_close(paths.to_torch(), ranking[f"score_{h}"].to_torch(), rtol=0, atol=1e-6)
    summary = trained["latest"]["ranking_summary"][name]
    assert summary.startswith(f"# Ranking for the trading day after {last}") and "## Top 10 by 1d" in summary
    assert "| part_network_1d | part_own_1d | part_neighbours_1d |" in summary
    assert "| rank | Code | Sector33Code | score_1d |" in summary and f"{ranking.height} stocks, every one that traded on {last}" in summary
    assert "each 5-20 day score leans on the 1-day one (50% of its ranking's weight, `forecast.one_day_share`)" in summary


def _latest(quotes, listed, topix):
    panel = build_panel(quotes, listed)
    features, market, manifest = build_features(panel, topix)
    return panel, features, market, manifest


def test_nothing_after_the_as_of_date_is_read(trained, tiny_market):
    model, splits, graphs = trained["model"], trained["splits"], trained["graphs"]
    as_of = trained["panel"]["Date"].unique().sort()[-12]
    full = _latest(tiny_market.daily_quotes, tiny_market.listed_info, tiny_market.topix)
    cut = lambda df: df.filter(pl.col("Date") <= as_of)  # noqa: E731
    truncated = _latest(cut(tiny_market.daily_quotes), tiny_market.listed_info, cut(tiny_market.topix))
    a = latest_ranking(model, *full, splits, graphs.config, 5.0, as_of=str(as_of))
    b = latest_ranking(model, *truncated, splits, graphs.config, 5.0)
    assert a["as_of"][0] == b["as_of"][0] == as_of
    assert a.equals(b)


def test_it_refuses_other_features_and_a_date_without_data(trained, tiny_market):
    model, splits, graphs = trained["model"], trained["splits"], trained["graphs"]
    panel, features, market, manifest = _latest(tiny_market.daily_quotes, tiny_market.listed_info, tiny_market.topix)
    with pytest.raises(InferenceError, match=r"stock features differ .* retrain: kedro run"):
        latest_ranking(model, panel, features, market, manifest[1:], splits, graphs.config, 5.0)
    with pytest.raises(InferenceError, match=r"no traded stock on 1999-01-04 \(it covers .*\); pick a trading day"):
        latest_ranking(model, panel, features, market, manifest, splits, graphs.config, 5.0, as_of="1999-01-04")
    with pytest.raises(InferenceError, match=r"inference.as_of must be a date \(YYYY-MM-DD\), got '06/01/2020'"):  # what was given, said back
        latest_ranking(model, panel, features, market, manifest, splits, graphs.config, 5.0, as_of="06/01/2020")
    kept = model["data_fingerprint"]["normalisation"]
    assert kept == trained["params"]["normalisation"]  # every checkpoint keeps how its features were normalised
    ranked = {**model, "data_fingerprint": {**model["data_fingerprint"], "normalisation": {**kept, "rank_groups": ["range"]}}}
    with pytest.raises(InferenceError, match=r"normalised with rank_groups \['range'\] .* inference has rank_groups \[\]"):
        latest_ranking(ranked, panel, features, market, manifest, splits, graphs.config, 5.0)
    # a model of the days it was kept beside the fingerprint
    beside = {**model, "data_fingerprint": {k: v for k, v in model["data_fingerprint"].items() if k != "normalisation"},
              "normalisation": {**kept, "clip": 4.0}}  # fmt: skip
    with pytest.raises(InferenceError, match=r"and clip 4.0, but inference has rank_groups \[\] and clip 5.0"):
        latest_ranking(beside, panel, features, market, manifest, splits, graphs.config, 5.0)


def test_a_run_id_mlflow_does_not_have_is_said_with_where_it_looked(tmp_path, monkeypatch):
    from atft_kedro.pipelines.inference.nodes import _logged_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(InferenceError, match=r"^inference.mlflow_run_id=nonexistent: no logged model of that run in the MLflow store sqlite:///.*mlflow.db \(.*nonexistent"):
        _logged_model("nonexistent")


def test_an_as_of_date_with_far_fewer_stocks_than_the_days_before_is_said(trained, tiny_market, caplog):
    """A download stopped part way through the last day: the ranking can only cover that day's
    stocks, and the log says so."""
    model, splits, graphs = trained["model"], trained["splits"], trained["graphs"]
    quotes = tiny_market.daily_quotes
    last = quotes["Date"].max()
    few = quotes["Code"].unique().sort().head(10)
    partial = quotes.filter((pl.col("Date") < last) | pl.col("Code").is_in(few.implode()))
    with caplog.at_level("WARNING", logger="atft_kedro.inference"):
        ranking = latest_ranking(model, *_latest(partial, tiny_market.listed_info, tiny_market.topix), splits, graphs.config, 5.0)
    assert set(ranking["Code"]) == set(few)
    assert f"{last} has 10 traded stocks against a median of" in caplog.text and "a part of a day's data?" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="atft_kedro.inference"):
        latest_ranking(model, *_latest(quotes, tiny_market.listed_info, tiny_market.topix), splits, graphs.config, 5.0)
    assert "a part of a day's data" not in caplog.text  # a whole day is not


def test_data_without_the_training_dates_is_refused_with_what_the_model_was_trained_on(trained, tiny_market):
    """An inference run without the training run's source (or with a history fetched from a later
    start) would scale the market context with other statistics than training did."""
    model, splits, graphs = trained["model"], trained["splits"], trained["graphs"]
    first_train = splits.filter(pl.col("split") == "train")["Date"].min()
    later = lambda df: df.filter(pl.col("Date") > first_train)  # noqa: E731
    latest = _latest(later(tiny_market.daily_quotes), tiny_market.listed_info, later(tiny_market.topix))
    made = model["data_fingerprint"]
    with pytest.raises(InferenceError, match=rf"the latest data lacks 1 of the \d+ training dates .*\(e.g. {first_train};.*not the data the model was "
                                             rf"trained on \(the model's: synthetic data, {made['stocks']} stocks, {made['first_date']} .. "):  # fmt: skip
        latest_ranking(model, *latest, splits, graphs.config, 5.0)


def test_a_model_of_other_data_than_the_catalogs_splits_is_refused(trained):
    """A model (the catalog's, or one an MLflow run logged) trained on other data than the catalog's
    splits and graphs: its market context would be scaled with another run's training dates."""
    from atft_kedro.provenance import StaleArtifactError

    other = {**trained["data_fingerprint"], "id": "0123456789ab"}  # data_engineering rerun on other data since
    given = {"model": trained["model"], "splits": trained["splits"], "graphs": trained["graphs"], "data_fingerprint": other}
    with pytest.raises(StaleArtifactError, match=r"^model, graphs were built from other data than the current data_engineering output .*0123456789ab"):
        run_in_memory(["inference"], trained["params"], inputs=given)

