"""The best of several noisy test means, chosen after they are read, sits above a forecaster of the
same skill by the expected maximum of the noise: the block bootstrap (evaluation.metrics'
shortfall_nulls, in every report's comparison to the best baseline and experiments/best_bar_null.py)
recovers that, and sees no selection where one baseline stands far above the rest."""

import numpy as np

from atft_kedro.evaluation import metrics as best_bar_null
from atft_kedro.evaluation.metrics import DailyScores, selection_of_the_best

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


def test_the_reports_selection_pairs_the_scorers_on_the_dates_all_of_them_scored():
    """selection_of_the_best: the scorers' series lined up by date (one baseline missing a date, one
    with an extra), and with every series at one mean the model's observed shortfall is ordinary."""
    rng = np.random.default_rng(3)
    dates = np.arange("2024-01-01", "2024-09-01", dtype="datetime64[D]")
    n = len(dates)
    series = rng.standard_normal((n, 5)) * 0.05
    def scores(col, keep):
        return DailyScores(dates=list(dates[keep]), ic=series[keep, col], rank_ic=series[keep, col], hits=0, pairs=0, skipped_dates=0)
    everything = np.ones(n, bool)
    gap = everything.copy()
    gap[7] = False
    out = selection_of_the_best(scores(0, everything), [scores(1, gap), *(scores(c, everything) for c in (2, 3, 4))], "5d", draws=400)
    rows = np.delete(series, 7, axis=0)
    expected = best_bar_null.shortfall_nulls([rows], 5, 400)
    assert out["mean"] == expected["all equal"].mean() and out["draws"] == 400  # the same rows, in the same order
    assert out["q05"] < out["mean"] < 0 and 0.05 < out["p"] < 0.95
    short = selection_of_the_best(scores(0, np.arange(n) < 1), [scores(c, everything) for c in (1, 2, 3, 4)], "1d")
    assert np.isnan(short["mean"]) and short["draws"] == 0  # one common date: nothing to resample
