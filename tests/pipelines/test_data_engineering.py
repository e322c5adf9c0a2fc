"""The data_engineering pipeline as Kedro runs it: real nodes, an in-memory catalog."""

import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from atft_kedro.features.builders import stock_feature_names
from atft_kedro.pipelines.data_engineering import create_pipeline
from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory

ROOT = Path(__file__).resolve().parents[2]


def _params():
    return project_parameters({"raw": {"synthetic_size": "tiny"}})


def _run(source: str, params: dict) -> dict:
    return run_in_memory(["data_engineering"], {**params, "source": source})


def test_every_pipeline_dataset_is_in_the_catalog():
    catalog = yaml.safe_load((ROOT / "conf/base/catalog.yml").read_text())
    datasets = create_pipeline().datasets()
    missing = {d for d in datasets if not d.startswith("params:") and d not in catalog}
    assert missing == {"jquants_credentials"}  # added by the credentials hook


def test_synthetic_end_to_end():
    out = _run("synthetic", _params())
    model_input = out["model_input"]
    manifest = out["feature_manifest"]
    splits = out["splits"]
    context = out["market_context"]
    stock = stock_feature_names(manifest)
    assert len(stock) >= 80
    assert set(stock + ["target_1d", "target_5d", "target_10d", "target_20d", "traded"]) <= set(model_input.columns)
    assert model_input.select(stock).null_count().sum_horizontal().item() == 0
    assert set(splits["split"]) == {"train", "val", "test"}
    assert context.height == out["topix"].height
    assert out["oracle_returns"].height == out["daily_quotes"].height


def test_files_source_on_the_real_stocknet_market(stocknet_dir, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(stocknet_dir, raw)
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    params = _params()
    params["raw"]["files_dir"] = str(raw)
    out = _run("files", params)
    model_input = out["model_input"]
    assert model_input["Code"].n_unique() == 88
    assert out["oracle_returns"].height == 0
    assert out["quarantine"].height == 0
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before  # raw files untouched


def test_files_source_quarantines_bad_rows(stocknet_dir, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(stocknet_dir, raw)
    quotes = pl.read_parquet(raw / "daily_quotes.parquet")
    quotes.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(-1.0).otherwise(pl.col("Close")).alias("Close")
    ).write_parquet(raw / "daily_quotes.parquet")
    params = _params()
    params["raw"]["files_dir"] = str(raw)
    quarantine = _run("files", params)["quarantine"]
    assert quarantine.select("row", "reason").rows() == [(5, "non-positive Close")]
    params["raw"]["on_bad_rows"] = "error"
    with pytest.raises(Exception, match="non-positive Close at row 5"):
        _run("files", params)


def test_a_stock_with_nan_prices_never_reaches_model_input(stocknet_dir, tmp_path):
    """NaN (not null) Close and AdjustmentClose on every row of one stock, five NaN prices in another."""
    raw = tmp_path / "raw"
    shutil.copytree(stocknet_dir, raw)
    quotes = pl.read_parquet(raw / "daily_quotes.parquet")
    all_nan, five_nan = quotes["Code"].unique().sort()[:2]
    five_rows = quotes.with_row_index("i").filter(pl.col("Code") == five_nan)["i"][100:105]
    nan = float("nan")
    quotes.with_columns(
        pl.when(pl.col("Code") == all_nan).then(nan).otherwise(pl.col(c)).alias(c) for c in ("Close", "AdjustmentClose")
    ).with_columns(
        pl.when(pl.int_range(pl.len()).is_in(five_rows.implode())).then(nan).otherwise(pl.col("AdjustmentOpen")).alias("AdjustmentOpen")
    ).write_parquet(raw / "daily_quotes.parquet")
    params = _params()
    params["raw"]["files_dir"] = str(raw)
    out = _run("files", params)
    quarantine = out["quarantine"]
    assert set(quarantine.filter(pl.col("Code") == all_nan)["reason"]) == {"NaN Close"}
    assert quarantine.filter(pl.col("Code") == five_nan)["reason"].to_list() == ["NaN AdjustmentOpen"] * 5
    model_input = out["model_input"]
    assert all_nan not in model_input["Code"].to_list()
    targets = [c for c in model_input.columns if c.startswith("target_")]
    assert model_input.select(pl.any_horizontal(pl.col(targets).is_nan())).to_series().sum() == 0


def test_a_bad_parameter_stops_the_run_before_any_node(monkeypatch):
    """Nodes annotate their parameters with the config dataclasses: Kedro builds them first."""
    from kedro.validation.exceptions import ParameterValidationError

    from atft_kedro.pipelines.data_engineering import nodes

    ran = []
    monkeypatch.setattr(nodes.builders, "build_features", lambda *a: ran.append(1))
    params = project_parameters({"raw": {"synthetic_size": "tiny"}, "graph": {"returns": "nope"}})
    with pytest.raises(ParameterValidationError, match=r"Parameter 'graph'.*graph returns must be one of"):
        run_in_memory(["data_engineering", "graph_construction"], params)
    assert ran == []
