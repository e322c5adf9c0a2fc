"""experiments/best_bar_null.py: the best of several noisy test means, chosen after they are read,
sits above a forecaster of the same skill by the expected maximum of the noise; the bootstrap
recovers that, and sees no selection where one baseline stands far above the rest."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import best_bar_null  # noqa: E402

E_MAX_OF_FOUR = 1.0294  # the expected maximum of four independent standard normals


def test_blocks_are_consecutive_dates_inside_the_series():
    rng = np.random.default_rng(0)
    idx = best_bar_null.block_indices(103, 10, rng)
    assert len(idx) == 103 and idx.min() >= 0 and idx.max() <= 102
    for start in range(0, 100, 10):  # each full block runs on by one date
        assert np.all(np.diff(idx[start : start + 10]) == 1)


def test_an_equally_skilled_model_falls_below_the_best_of_four_by_the_expected_maximum():
    rng = np.random.default_rng(1)
    n = 2000
    market = 0.03 + rng.standard_normal((n, 5))  # the model and four baselines, one mean
    out = best_bar_null.shortfall_nulls([market], block=5, draws=600)
    se = 1.0 / np.sqrt(n)
    assert np.isclose(out["observed"], market[:, 0].mean() - market[:, 1:].mean(0).max())
    assert abs(out["all equal"].mean() + E_MAX_OF_FOUR * se) < 0.15 * E_MAX_OF_FOUR * se
    assert out["all equal"].mean() < out["as observed"].mean() < 0  # noise-widened spreads: less selection, some


def test_a_baseline_far_above_the_rest_leaves_no_selection_under_the_observed_null():
    rng = np.random.default_rng(2)
    n = 1500
    market = rng.standard_normal((n, 5))
    market[:, 1] += 1.0  # one baseline 39 standard errors above the others
    out = best_bar_null.shortfall_nulls([market, market.copy()], block=5, draws=300)
    se = 1.0 / np.sqrt(n)
    null = out["as observed"]
    assert abs(null.mean()) < 3 * null.std() / np.sqrt(len(null))  # the best is known: the model matches it, no selection
    assert out["all equal"].mean() < -0.8 * E_MAX_OF_FOUR * se  # moved to one mean, the selection is back
