"""experiments/ridge_lean.py: the ridge fitted again from a run's data is the evaluation's ridge, and
the lean runs from the model's ranking (share 0) to the ridge's (share 1)."""

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.conftest import TINY_PARAMS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import ridge_lean  # noqa: E402


def _frames(data, rng):
    """A run's validation and test frames: the model a noisy copy of each target."""
    from atft_kedro.features.splits import split_dates

    frames = []
    for split in ("val", "test"):
        rows = data["model_input"].filter(pl.col("Date").is_in(split_dates(data["splits"], split).implode()))
        rows = rows.select("Date", "Code", *(f"target_{h}" for h in ridge_lean.LONG))
        frames.append(rows.with_columns(pl.Series(f"pred_{h}", rows[f"target_{h}"].fill_null(0).to_numpy() + rng.normal(size=rows.height))
                                        for h in ridge_lean.LONG))  # fmt: skip
    return frames


def test_the_ridge_is_the_evaluations_and_the_share_moves_the_ranking_from_the_model_to_the_ridge(tiny_pipeline):
    from atft_kedro.evaluation.baselines import BaselineConfig, baseline_frame
    from atft_kedro.features.builders import stock_feature_names

    data = ridge_lean.run_data({**TINY_PARAMS, "evaluation": {"min_stocks": 10}})
    val, test = _frames(data, np.random.default_rng(0))
    (val, test), alphas = ridge_lean.with_ridge([val, test], data)
    assert set(alphas) == {f"{h} fold0" for h in ridge_lean.LONG}
    cfg = BaselineConfig.from_params(data["params"]["evaluation"])
    names = stock_feature_names(tiny_pipeline["feature_manifest"])
    scored, _, _ = baseline_frame(test.select("Date", "Code", "pred_20d", "target_20d"), tiny_pipeline["features"], data["model_input"],
                                  pl.DataFrame(), data["splits"], names, ["20d"], cfg)  # fmt: skip
    np.testing.assert_allclose(test["ridge_lean_20d"].to_numpy(), scored["ridge_20d"].to_numpy(), rtol=1e-9)
    for share, column in ((0.0, "pred_20d"), (1.0, "ridge_lean_20d")):
        leaned = ridge_lean.leaned(val, "20d", share).with_columns(val[column].alias("was"))
        order = leaned.group_by("Date").agg(pl.corr("pred_20d", "was", method="spearman").alias("r"))
        assert order["r"].min() == pytest.approx(1.0)
    half = ridge_lean.leaned(val, "20d", 0.5)
    assert not np.allclose(half["pred_20d"].to_numpy(), ridge_lean.leaned(val, "20d", 0.0)["pred_20d"].to_numpy())
    with_1d = val.with_columns(pl.Series("pred_1d", np.random.default_rng(2).normal(size=val.height)))
    on_1d = ridge_lean.leaned(with_1d, "20d", 1.0, on="one_day").with_columns(with_1d["pred_1d"].alias("was"))
    assert on_1d.group_by("Date").agg(pl.corr("pred_20d", "was", method="spearman").alias("r"))["r"].min() == pytest.approx(1.0)


def test_gains_pool_draws_as_markets_and_seeds_date_by_date(tmp_path):
    """A lean equal to the model gains exactly 0; one run's gain is its paired difference either way."""
    rng = np.random.default_rng(1)
    dates = np.repeat(np.arange(30), 40)
    target = rng.normal(size=dates.size)
    frame = pl.DataFrame({"Date": dates, "Code": np.tile(np.arange(40).astype(str), 30), "target_5d": target, "pred_5d": target + rng.normal(size=dates.size)})
    better = frame.with_columns(pl.Series("pred_5d", target + 0.5 * rng.normal(size=dates.size)))
    assert ridge_lean.gain([(frame, frame)], "5d", False, several_seeds=False)["mean"] == 0.0
    one = ridge_lean.gain([(better, frame)], "5d", False, several_seeds=False)
    seeds = ridge_lean.gain([(better, frame)], "5d", False, several_seeds=True)
    assert one["mean"] > 0 and (one["mean"], one["se"]) == pytest.approx((seeds["mean"], seeds["se"]))
    two = ridge_lean.gain([(better, frame), (frame, frame)], "5d", False, several_seeds=False)
    assert two["mean"] == pytest.approx(one["mean"] / 2) and two["se"] == pytest.approx(one["se"] / 2)
    json.dumps(two)  # plain numbers, as the report prints them


def test_written_runs_hold_the_leaned_frames_and_the_runs_other_records(tmp_path):
    rng = np.random.default_rng(3)
    dates = np.repeat(np.arange(12), 30)

    def frame():
        return pl.DataFrame({"Date": dates, "Code": np.tile(np.arange(30).astype(str), 12),
                             **{f"{c}_{h}": rng.normal(size=dates.size) for c in ("pred", "target") for h in ("1d", *ridge_lean.LONG)}})  # fmt: skip

    runs = [{"val": frame(), "test": frame(), "seed": 0, "saved": {"seed": 0, "metrics": {"m": 1}, "frame": "old", "val_frame": "old"}}]
    written = json.loads(ridge_lean.write_leaned(runs, 0.5, "one_day", tmp_path / "out").read_text())
    assert written[0]["metrics"] == {"m": 1} and written[0]["frame"] != "old"
    test = pl.read_parquet(written[0]["frame"])
    expected = runs[0]["test"]
    for h in ridge_lean.LONG:
        expected = ridge_lean.leaned(expected, h, 0.5, "one_day")
    assert test.equals(expected) and test["pred_1d"].equals(runs[0]["test"]["pred_1d"])
