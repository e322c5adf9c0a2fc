"""The feature groups' permutation importance: what moving a group between stocks does to the inputs,
and how its worth is scored."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
import torch

from atft_kedro.evaluation.importance import ShuffledColumns, feature_groups, group_importance
from atft_kedro.pipelines.training.nodes import build_training_arrays
from atft_kedro.training.data import DateDataset


@pytest.fixture(scope="module")
def arrays(tiny_pipeline):
    out = tiny_pipeline
    return build_training_arrays(out["model_input"], out["market_context"], out["feature_manifest"], {}), out["graphs"], out["feature_manifest"]


def test_feature_groups_are_the_manifests_groups_of_the_arrays_columns(arrays):
    a, _, manifest = arrays
    groups = feature_groups(manifest, a.feature_names)
    assert sorted(np.concatenate(list(groups.values())).tolist()) == list(range(len(a.feature_names)))  # each column once
    for group, columns in groups.items():
        assert {m["group"] for m in manifest if m["name"] in {a.feature_names[c] for c in columns}} == {group}
    with pytest.raises(ValueError, match="does not list the model's features"):
        feature_groups([m for m in manifest if m["name"] != a.feature_names[0]], a.feature_names)


def test_moving_a_group_gives_each_stock_another_stocks_whole_history_of_it_and_keeps_the_rest(arrays):
    a, graphs, manifest = arrays
    columns = feature_groups(manifest, a.feature_names)["volatility"]
    rest = np.setdiff1d(np.arange(len(a.feature_names)), columns)
    plain = DateDataset(a, graphs, [100, 101], window=20)
    moved = ShuffledColumns(a, graphs, [100, 101], 20, columns, seed=0)
    sources = []
    for i in range(2):
        x, y = plain[i]["x"], moved[i]["x"]
        assert torch.equal(x[:, :, rest], y[:, :, rest])
        np.testing.assert_array_equal(plain[i]["targets"], moved[i]["targets"])  # NaN where a target is missing
        assert torch.equal(plain[i]["neighbors"], moved[i]["neighbors"])
        block, moved_block = x[:, :, columns].flatten(1), y[:, :, columns].flatten(1)  # (N, T * group): a stock's whole history of the group
        source = [int(torch.nonzero((block == row).all(1))[0]) for row in moved_block]
        assert sorted(source) == list(range(len(block)))  # a permutation of the stocks
        assert np.mean(np.asarray(source) != np.arange(len(block))) > 0.9
        sources.append(source)
    assert sources[0] != sources[1]  # each date its own draw
    assert torch.equal(moved[0]["x"], ShuffledColumns(a, graphs, [100, 101], 20, columns, seed=0)[0]["x"])  # the same draw every pass
    assert not torch.equal(moved[0]["x"], ShuffledColumns(a, graphs, [100, 101], 20, columns, seed=1)[0]["x"])


def test_a_group_the_forecast_does_not_read_is_worth_nothing_and_one_it_ranks_by_is_worth_its_ranking():
    rng = np.random.default_rng(0)
    dates, stocks = 60, 50
    day = pl.date_range(dt.date(2024, 1, 1), dt.date(2024, 1, 1) + dt.timedelta(days=dates - 1), eager=True).to_numpy().repeat(stocks)
    target = rng.normal(size=dates * stocks)
    forecast = target + 2.0 * rng.normal(size=len(target))
    reference = pl.DataFrame({"Date": day, "Code": np.tile(np.arange(stocks), dates), "pred_1d": forecast, "target_1d": target})
    lost = reference.with_columns(pl.col("pred_1d").shuffle(seed=1).over("Date"))  # the forecast's ranking gone
    worth = group_importance(reference, {"unread": reference, "read": lost}, min_stocks=20)
    assert worth["unread"]["1d"]["worth"]["mean"] == 0.0 and worth["unread"]["1d"]["worth"]["ci95_high"] == 0.0
    ranking = worth["unread"]["1d"]["rank_ic_moved"]
    assert ranking > 0.3 and worth["read"]["1d"]["worth"]["ci95_low"] > 0.2
    assert worth["read"]["1d"]["worth"]["mean"] == pytest.approx(ranking - worth["read"]["1d"]["rank_ic_moved"])
    assert worth["read"]["1d"]["worth"]["dates"] == dates


def test_importance_dates_zero_turns_the_feature_importance_off_and_the_report_and_plot_say_so():
    from matplotlib.figure import Figure

    from atft_kedro.evaluation.evaluate import EvaluationConfig
    from atft_kedro.evaluation.report import METRIC_KEYS, markdown_report, metrics_document
    from atft_kedro.pipelines.evaluation import nodes
    from atft_kedro.pipelines.in_memory import project_parameters

    params = project_parameters({"evaluation": {"importance_dates": 0}})["evaluation"]
    model = {"config": {"phase": 0}, "epoch": 1, "saved_at": "now"}
    made = pl.DataFrame({"Date": [dt.date(2024, 1, 1)], "Code": ["1"], "pred_1d": [0.0], "target_1d": [0.0], "model_id": ["phase 0 epoch 1 saved now"]})
    document, figure = nodes.feature_importance(model, None, None, None, None, made, [], params)  # nothing else is read
    assert document["groups"] == {} and document["dates"] == 0 and document["off"] == "evaluation.importance_dates: 0"
    assert isinstance(figure, Figure) and "feature importance off" in figure.axes[0].texts[0].get_text()
    doc = {**metrics_document({"1d": {"model": {k: 0.1 for k in METRIC_KEYS}}}, {}), "feature_importance": document}
    context = {"source": "synthetic", "n_dates": 1, "start": "a", "end": "a", "n_stocks": 1, "quantile": 0.2, "cost_bp": 10}
    assert "Not measured: the feature importance is off (evaluation.importance_dates: 0)." in markdown_report(doc, {"1d": {"model": (1, 0)}}, context)
    for bad in (-1, 2.5, True, "all"):
        with pytest.raises(ValueError, match="importance_dates is how many of the last validation dates"):
            EvaluationConfig.from_params({**params, "importance_dates": bad})
