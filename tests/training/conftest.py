import pytest

from atft_kedro.features.prepare import prepare_model_data
from atft_kedro.graph.correlation import GraphConfig, build_graphs
from atft_kedro.training.data import build_arrays
from atft_kedro.training.loop import TrainConfig


@pytest.fixture(scope="session")
def prepared(tiny_market):
    """Training arrays, splits and graphs of the tiny market, as the pipelines make them."""
    data = prepare_model_data(tiny_market.daily_quotes, tiny_market.listed_info, tiny_market.topix)
    arrays = build_arrays(data.model_input, data.market_context, data.feature_names)
    graphs = build_graphs(data.panel, GraphConfig(k=6, window=40, min_periods=25), progress=False)
    return {"arrays": arrays, "graphs": graphs, "splits": data.splits, "manifest": data.manifest}


def small_config(**kw) -> TrainConfig:
    base = dict(epochs=2, patience=5, max_train_dates=12, min_stocks=10, lr=3e-3,
                model={"d_model": 16, "temporal_heads": 2, "gat_heads": 2, "gat_layers": 1, "dropout": 0.1})  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)
