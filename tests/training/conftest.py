import pytest

from atft_kedro.pipelines.training.nodes import build_training_arrays
from atft_kedro.training.config import TrainConfig


@pytest.fixture(scope="session")
def prepared(tiny_pipeline):
    """Training arrays, splits and graphs of the tiny market, made by the pipelines' own nodes."""
    out = tiny_pipeline
    arrays = build_training_arrays(out["model_input"], out["market_context"], out["feature_manifest"], {})
    return {"arrays": arrays, "graphs": out["graphs"], "splits": out["splits"], "manifest": out["feature_manifest"],
            "model_input": out["model_input"], "market_context": out["market_context"]}  # fmt: skip


def small_config(**kw) -> TrainConfig:
    base = dict(epochs=2, patience=5, max_train_dates=12, min_stocks=10, lr=3e-3,
                model={"d_model": 16, "temporal_heads": 2, "gat_heads": 2, "gat_layers": 1, "dropout": 0.1})  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)
