"""experiments/recency_ridge.py and the row weights it gives ``ridge_solve``: recent dates weigh more,
or quiet stocks."""

import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from recency_ridge import by_date, one_se_choice, recency_weights, volatility_weights  # noqa: E402

from atft_kedro.evaluation.baselines import ridge_solve  # noqa: E402


def test_weighted_ridge_is_the_ridge_of_rows_repeated_by_their_weights():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=30)
    w = rng.integers(1, 4, size=30)
    repeated = np.repeat(np.arange(30), w)
    weighted = ridge_solve(x, y, 5.0, weights=w)
    assert weighted == pytest.approx(ridge_solve(x[repeated], y[repeated], 5.0), abs=1e-10)
    assert not np.allclose(weighted, ridge_solve(x, y, 5.0))
    assert ridge_solve(x, y, 5.0, weights=np.ones(30)).tobytes() == ridge_solve(x, y, 5.0).tobytes()


def test_recency_weights_halve_every_half_life_and_average_one():
    days = np.repeat([date(2024, 1, 1) + timedelta(days=d) for d in (0, 1, 3, 4, 7)], 3)  # five dates, three rows each
    w = recency_weights(days, 2.0)
    assert w.mean() == pytest.approx(1.0)
    per_date = w[::3]
    assert np.all(w == np.repeat(per_date, 3))
    assert per_date / per_date[-1] == pytest.approx(0.5 ** (np.arange(4, -1, -1) / 2.0))  # age in dates, not calendar days
    assert np.all(recency_weights(days, np.inf) == 1.0)


def test_by_date_keeps_the_dates_with_enough_stocks():
    days = np.array([1] * 5 + [2] * 3)
    score = np.array([1, 2, 3, 4, 5, 1, 2, 3], dtype=float)
    y = np.array([5, 4, 3, 2, 1, 1, 2, 3], dtype=float)
    assert by_date(days, score, y, min_stocks=4) == {1: pytest.approx(-1.0)}
    assert by_date(days, score, y, min_stocks=3) == {1: pytest.approx(-1.0), 2: pytest.approx(1.0)}


def test_volatility_weights_are_inverse_powers_of_the_floored_volatility_and_average_one():
    days = np.repeat([1, 2], 10)
    vol = np.concatenate([np.arange(1.0, 11.0), 2 * np.arange(1.0, 11.0)])
    vol[3], vol[15] = np.nan, np.nan  # missing: its date's median
    w = volatility_weights(days, vol, 2.0)
    assert w.mean() == pytest.approx(1.0)
    assert w[9] / w[8] == pytest.approx((9 / 10) ** 2)  # above the floor: one over the variance
    assert w[0] == w[1] > w[2] and w[10] == w[11] > w[12]  # each date's quietest rows share its floor's weight
    assert w[3] == pytest.approx(w[9] * (10 / np.nanmedian(vol[:10])) ** 2)
    assert w[19] == pytest.approx(w[9] / 4)  # a stock twice as volatile weighs a quarter
    one = volatility_weights(days, vol, 1.0)
    assert one[9] / one[8] == pytest.approx(9 / 10) and one.mean() == pytest.approx(1.0)


def test_the_one_standard_error_rule_keeps_the_least_winsorising_candidate_near_the_best():
    """Clip 1 is best; the features as they are trail it by less than a standard error of the
    paired difference, clip 3 by far more: the rule keeps the features as they are, returns before
    ranks. With the near one moved far below, it keeps the best."""
    rng = np.random.default_rng(0)
    dates = list(range(200))
    base = rng.normal(0.03, 0.1, size=200)
    noise = lambda s: (lambda e: e - e.mean())(rng.normal(0, s, size=200))  # noqa: E731  (mean 0: each deficit exactly as written)
    today = {(0, 1.0, "raw"): base, (0, np.inf, "rank"): base - 0.002 + noise(0.05), (0, np.inf, "raw"): base - 0.002 + noise(0.05),
             (0, 3.0, "raw"): base - 0.05 + noise(0.01)}  # fmt: skip
    scores = {k: dict(zip(dates, v)) for k, v in today.items()}
    assert one_se_choice(scores, dates) == (0, np.inf, "raw")  # 0.002 behind, a standard error of about 0.0035
    scores[0, np.inf, "raw"] = dict(zip(dates, base - 0.05 + noise(0.01)))
    scores[0, np.inf, "rank"] = dict(zip(dates, base - 0.05 + noise(0.01)))
    assert one_se_choice(scores, dates) == (0, 1.0, "raw")


def test_another_target_comes_for_the_same_rows_less_its_dates_mean():
    """``Market.other_target``: the 5-day returns of the rows the 1-day fits use (a 1-day target
    missing drops the row; a 5-day one missing is NaN), in their order, less each date's mean."""
    import polars as pl
    from _folds import Market

    from atft_kedro.evaluation.baselines import _rows

    d1, d2, d3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)
    model_input = pl.DataFrame({"Date": [d1, d1, d1, d2, d2, d3], "Code": ["a", "b", "c", "a", "b", "a"], "f": [1.0, 2, 3, 4, 5, 6],
                                "target_1d": [0.1, None, 0.3, 0.4, float("nan"), 0.6],
                                "target_5d": [1.0, 2.0, 5.0, None, 7.0, 9.0]})  # fmt: skip
    market = Market(params={}, model_input=model_input, names=["f"], splits=None, cfg=None, manifest=[])
    rows = _rows(model_input, ["f"], "target_1d", [d1, d2])
    other = market.other_target("target_5d", "target_1d", [d1, d2])
    assert rows["f"].to_list() == [1.0, 3.0, 4.0] and len(other) == rows.height
    assert other[:2] == pytest.approx([-2.0, 2.0]) and np.isnan(other[2])  # d1: 1 and 5 less their mean 3; d2's only row has none
