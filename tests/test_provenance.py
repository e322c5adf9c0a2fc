"""Fingerprints: what an artifact was built from, and the check that a node's inputs agree."""

import polars as pl
import pytest

from atft_kedro.provenance import StaleArtifactError, check_built_from, data_fingerprint


@pytest.fixture(scope="module")
def tables(tiny_market):
    return {"daily_quotes": tiny_market.daily_quotes, "listed_info": tiny_market.listed_info, "topix": tiny_market.topix}


PARAMS = {"splits": {"val_fraction": 0.15}, "normalisation": {"clip": 5.0}}


def test_the_same_data_has_the_same_fingerprint_and_any_change_another(tables):
    fp = data_fingerprint(tables, PARAMS, "synthetic")
    again = data_fingerprint({k: v.clone() for k, v in tables.items()}, PARAMS, "synthetic")
    assert fp["id"] == again["id"] and fp["stocks"] == tables["daily_quotes"]["Code"].n_unique()
    q = tables["daily_quotes"]
    one_price = q.with_columns(pl.when(pl.int_range(pl.len()) == 77).then(pl.col("Close") * 1.001).otherwise(pl.col("Close")).alias("Close"))
    one_code = q.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("99990")).otherwise(pl.col("Code")).alias("Code"))
    a_null = q.with_columns(pl.when(pl.int_range(pl.len()) == 9).then(None).otherwise(pl.col("Volume")).alias("Volume"))
    for changed in (one_price, one_code, a_null):
        assert data_fingerprint({**tables, "daily_quotes": changed}, PARAMS, "synthetic")["id"] != fp["id"]
    assert data_fingerprint(tables, {**PARAMS, "normalisation": {"clip": 4.0}}, "synthetic")["id"] != fp["id"]


def test_a_stale_artifact_is_named_with_the_commands_that_rebuild_it_in_order(tables):
    now = data_fingerprint(tables, PARAMS, "files")
    old = {**now, "id": "0123456789ab", "source": "synthetic"}
    check_built_from(now, graphs=now, model=now)  # the same data: nothing to say
    with pytest.raises(StaleArtifactError) as err:
        check_built_from(now, model=old, graphs=None, training_arrays=now)
    message = str(err.value)
    assert message.startswith("model, graphs were built from other data than the current data_engineering output (files data")
    assert "model: synthetic data 0123456789ab" in message and "graphs: no fingerprint" in message
    assert "Rebuild: kedro run --pipelines graph_construction then kedro run --pipelines training" in message
    assert "\n" not in message
