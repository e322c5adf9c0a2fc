"""The data_engineering pipeline as Kedro runs it: real nodes, an in-memory catalog."""

import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from atft_kedro.data.jquants import JQuantsCredentials
from atft_kedro.pipelines.data_engineering import create_pipeline

ROOT = Path(__file__).resolve().parents[2]


def _params():
    params = yaml.safe_load((ROOT / "conf/base/parameters_data_engineering.yml").read_text())
    params["raw"]["synthetic_size"] = "tiny"
    return params


class _Kept(MemoryDataset):
    """A memory dataset the runner cannot release, so that a test can look at intermediates."""

    def _release(self) -> None:
        pass


def _run(source: str, params: dict) -> DataCatalog:
    pipeline = create_pipeline()
    catalog = DataCatalog({name: _Kept() for name in pipeline.datasets() if not name.startswith("params:")})
    catalog["params:source"] = source
    catalog["jquants_credentials"] = JQuantsCredentials()  # what the project's hook provides
    for key, value in params.items():
        catalog[f"params:{key}"] = value
    SequentialRunner().run(pipeline, catalog)
    return catalog


def test_every_pipeline_dataset_is_in_the_catalog():
    catalog = yaml.safe_load((ROOT / "conf/base/catalog.yml").read_text())
    datasets = create_pipeline().datasets()
    missing = {d for d in datasets if not d.startswith("params:") and d not in catalog}
    assert not missing


def test_synthetic_end_to_end():
    catalog = _run("synthetic", _params())
    model_input = catalog.load("model_input")
    manifest = catalog.load("feature_manifest")
    splits = catalog.load("splits")
    context = catalog.load("market_context")
    stock = [m["name"] for m in manifest if not m["date_constant"]]
    assert len(stock) >= 80
    assert set(stock + ["target_1d", "target_5d", "target_10d", "target_20d", "traded"]) <= set(model_input.columns)
    assert model_input.select(stock).null_count().sum_horizontal().item() == 0
    assert set(splits["split"]) == {"train", "val", "test"}
    assert context.height == catalog.load("topix").height
    assert catalog.load("oracle_returns").height == catalog.load("daily_quotes").height


def test_files_source_on_the_real_stocknet_market(stocknet_dir, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(stocknet_dir, raw)
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    params = _params()
    params["raw"]["files_dir"] = str(raw)
    catalog = _run("files", params)
    model_input = catalog.load("model_input")
    assert model_input["Code"].n_unique() == 88
    assert catalog.load("oracle_returns").height == 0
    assert catalog.load("quarantine").height == 0
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
    quarantine = _run("files", params).load("quarantine")
    assert quarantine.select("row", "reason").rows() == [(5, "non-positive Close")]
    params["raw"]["on_bad_rows"] = "error"
    with pytest.raises(Exception, match="non-positive Close at row 5"):
        _run("files", params)
