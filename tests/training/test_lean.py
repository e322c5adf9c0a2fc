"""lean_on_one_day: each long forecast with the 1-day forecast added at a share of its ranking's
weight, the paths and quantiles moved with it."""

import numpy as np
import polars as pl
import pytest

from atft_kedro.training.predict import lean_on_one_day


def _frame(rng, dates: int = 3, stocks: int = 40) -> pl.DataFrame:
    """Forecasts of two horizons, each the sum of three paths, with quantiles around the median; each
    date's forecasts on their own scale and level."""
    parts = []
    for d in range(dates):
        cols = {}
        for h, scale in (("1d", 0.01 * (d + 1)), ("5d", 0.05)):
            paths = {name: scale * rng.normal(size=stocks) + 0.002 * d for name in ("network", "own", "neighbours")}
            cols.update({f"part_{name}_{h}": v for name, v in paths.items()})
            cols[f"pred_{h}"] = sum(paths.values())
            cols[f"q05_{h}"], cols[f"q95_{h}"] = cols[f"pred_{h}"] - 0.03, cols[f"pred_{h}"] + 0.04
            cols[f"target_{h}"] = rng.normal(size=stocks)
        parts.append(pl.DataFrame({"Date": [d] * stocks, "Code": [f"{c:04d}" for c in range(stocks)], **cols}))
    return pl.concat(parts)


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std(ddof=1)


@pytest.mark.parametrize("share", [0.25, 0.5, 0.8])
def test_it_ranks_as_the_z_scores_weighted_and_keeps_each_dates_mean(share):
    frame = _frame(np.random.default_rng(0))
    leaned = lean_on_one_day(frame, share)
    for d in range(3):
        before, after = frame.filter(pl.col("Date") == d), leaned.filter(pl.col("Date") == d)
        blend = (1 - share) * _z(before["pred_5d"].to_numpy()) + share * _z(before["pred_1d"].to_numpy())
        # the same ranking: an increasing affine map of the z-score blend, each date its own
        np.testing.assert_allclose(_z(after["pred_5d"].to_numpy()), _z(blend), atol=1e-12)
        assert after["pred_5d"].mean() == pytest.approx(before["pred_5d"].mean(), abs=1e-15)
        assert after["pred_1d"].equals(before["pred_1d"]) and after["target_5d"].equals(before["target_5d"])


def test_the_paths_still_sum_to_the_forecast_and_the_quantiles_move_with_the_median():
    frame = _frame(np.random.default_rng(1))
    leaned = lean_on_one_day(frame, 0.5)
    paths = leaned.select(sum(pl.col(f"part_{name}_5d") for name in ("network", "own", "neighbours"))).to_series()
    np.testing.assert_allclose(paths.to_numpy(), leaned["pred_5d"].to_numpy(), atol=1e-12)
    moved = (leaned["pred_5d"] - frame["pred_5d"]).to_numpy()
    assert np.abs(moved).max() > 1e-3  # it did move
    for q in ("q05_5d", "q95_5d"):
        np.testing.assert_allclose((leaned[q] - frame[q]).to_numpy(), moved, atol=1e-12)


def test_share_zero_leaves_the_forecasts_and_a_share_of_one_or_more_is_refused():
    frame = _frame(np.random.default_rng(2))
    assert lean_on_one_day(frame, 0.0).equals(frame)
    assert lean_on_one_day(frame.drop("pred_1d"), 0.5).equals(frame.drop("pred_1d"))  # no 1-day forecast to lean on
    for share in (1.0, -0.2):
        with pytest.raises(ValueError, match=r"one_day_share is the 1-day forecast's share .* in \[0, 1\)"):
            lean_on_one_day(frame, share)


def test_a_date_whose_one_day_forecasts_are_all_equal_keeps_its_long_forecast():
    frame = _frame(np.random.default_rng(3)).with_columns(pl.when(pl.col("Date") == 1).then(0.0).otherwise(pl.col("pred_1d")).alias("pred_1d"))
    leaned = lean_on_one_day(frame, 0.5)
    assert leaned.filter(pl.col("Date") == 1)["pred_5d"].equals(frame.filter(pl.col("Date") == 1)["pred_5d"])
