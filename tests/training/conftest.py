import polars as pl
import pytest

from atft_kedro.features import builders, normalise, panel, splits, targets
from atft_kedro.graph.correlation import GraphConfig, build_graphs
from atft_kedro.training.data import build_arrays
from atft_kedro.training.loop import TrainConfig


@pytest.fixture(scope="session")
def prepared(tiny_market):
    """model_input, market context, splits and graphs of the tiny market, as the pipelines make them."""
    p = panel.build_panel(tiny_market.daily_quotes, tiny_market.listed_info)
    feats, market, manifest = builders.build_features(p, tiny_market.topix)
    names = [m["name"] for m in manifest if not m["date_constant"]]
    model_input = normalise.robust_zscore_by_date(feats, names).join(targets.build_targets(p), on=["Date", "Code"])
    sp = splits.make_splits(p["Date"], splits.SplitConfig())
    train_dates = sp.filter(pl.col("split") == "train")["Date"]
    context, _ = normalise.standardise_with_train_stats(market, market.columns[1:], train_dates)
    arrays = build_arrays(model_input, context, names)
    graphs = build_graphs(p, GraphConfig(k=6, window=40, min_periods=25), progress=False)
    return {"arrays": arrays, "graphs": graphs, "splits": sp, "manifest": manifest}


def small_config(**kw) -> TrainConfig:
    base = dict(epochs=2, patience=5, max_train_dates=12, min_stocks=10, lr=3e-3,
                model={"d_model": 16, "temporal_heads": 2, "gat_heads": 2, "gat_layers": 1, "dropout": 0.1})  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)
