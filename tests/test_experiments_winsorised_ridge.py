"""experiments/winsorised_ridge.py: a feature's far values, where the target follows it no further,
set an unclipped linear fit's ranking; winsorised, the fit ranks as the truth does."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from winsorised_ridge import hinge_basis, purged_cv, winsorised_ridge  # noqa: E402


def _split(rng, dates: int, stocks: int = 40):
    """Two robust-z-like features that both rank the target inside +-1; 30% of the second's values
    are far out (+-3 to +-5), where the target follows it no further."""
    x = rng.normal(size=(dates * stocks, 2))
    far = rng.random(len(x)) < 0.3
    x[far, 1] = rng.choice([-1.0, 1.0], far.sum()) * rng.uniform(3.0, 5.0, far.sum())
    y = 0.3 * x[:, 0] + 0.6 * np.clip(x[:, 1], -1.0, 1.0) + rng.normal(size=len(x))
    return x, y, np.repeat(np.arange(dates), stocks)


def test_winsorising_keeps_the_tails_from_setting_the_ranking():
    rng = np.random.default_rng(0)
    (xt, yt, dt), (xv, yv, dv) = _split(rng, 200), _split(rng, 60)
    x, y, days = {"train": xt, "val": xv}, {"train": yt, "val": yv}, {"train": dt, "val": dv}
    plain, _ = winsorised_ridge(x, y, days, np.inf, (10.0,), 10)
    clipped, _ = winsorised_ridge(x, y, days, 1.0, (10.0,), 10)
    assert clipped > plain + 0.02  # as they are, the far rows of the second feature top and tail each date's ranking
    best, _ = winsorised_ridge(x, y, days, 1.0, (1e7, 10.0, 1e9), 10)
    assert best == pytest.approx(clipped, abs=1e-12)  # the penalty validation ranks best (here 10)


def test_the_training_splits_cross_validation_sees_the_tails_too():
    x, y, days = _split(np.random.default_rng(1), 200)
    plain, clipped = (purged_cv(x, y, days, c, 10.0, 10, blocks=5, purge=5) for c in (np.inf, 1.0))
    assert clipped > plain + 0.02


def test_the_cross_validation_scores_each_block_out_of_sample():
    from atft_kedro.evaluation.baselines import mean_daily_rank_ic, ridge_solve

    rng = np.random.default_rng(2)
    x, days = rng.normal(size=(60 * 40, 60)), np.repeat(np.arange(60), 40)
    y = rng.normal(size=len(x))  # nothing to learn: only a fit that has seen the rows ranks them
    in_sample = mean_daily_rank_ic(days, x @ ridge_solve(x, y, 1e-3)[:-1], y, 10)
    held_out = purged_cv(x, y, days, np.inf, 1e-3, 10, blocks=5, purge=2)
    assert in_sample > 0.1 and abs(held_out) < 0.03


def test_the_hinge_basis_bends_the_fit_at_its_clips():
    from atft_kedro.evaluation.baselines import ridge_solve

    rng = np.random.default_rng(3)
    x = rng.uniform(-4.0, 4.0, size=(4000, 1))
    y = np.clip(x[:, 0], -1.0, 1.0)  # flat beyond +-1: a line cannot fit it, a line bent at 1 can
    basis = hinge_basis(x, [1.0, 2.0])
    assert basis.shape == (4000, 3) and np.array_equal(basis[:, 0], x[:, 0]) and basis[:, 1].max() == pytest.approx(1.0, abs=1e-3)
    line, bent = (z @ ridge_solve(z, y, 1e-6)[:-1] + ridge_solve(z, y, 1e-6)[-1] for z in (x, basis))
    assert np.abs(bent - y).max() < 1e-6 < 0.3 < np.abs(line - y).max()
