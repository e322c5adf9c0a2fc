"""experiments/choose_by_fold.py: one of two settings chosen per fold on validation, scored where it was not chosen."""

import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from choose_by_fold import choices, chosen_minus_this  # noqa: E402
from seeds import _daily  # noqa: E402


def _frame(rng, start: int, n_dates: int, skill, fold: int, stocks: int = 40) -> pl.DataFrame:
    """One fold's rows: ``skill(i)`` (0 = noise, 1 = the target plus a little noise) on the i-th date."""
    rows = []
    for i in range(n_dates):
        target = rng.normal(size=stocks)
        pred = skill(i) * target + rng.normal(size=stocks)
        day = date(2020, 1, 1) + timedelta(days=start + i)
        rows.append(pl.DataFrame({"Date": [day] * stocks, "Code": [f"{c:04d}" for c in range(stocks)], "pred_1d": pred, "target_1d": target, "fold": [fold] * stocks}))
    return pl.concat(rows)


def _run(rng, skills: dict) -> dict:
    """A run's validation (dates 0-39 of each fold) and test (40-59) frames; ``skills[fold]`` gives each date's skill."""
    frames = {split: pl.concat([_frame(rng, 100 * fold + offset, 40 if split == "val" else 20, lambda i, s=skills[fold], o=offset: s(i + o), fold) for fold in skills])
              for split, offset in (("val", 0), ("test", 40))}  # fmt: skip
    return {"seed": 0, **frames}


def _mean_difference(a, b, split, fold, dates=None):
    pick = lambda f: f[split].filter(pl.col("fold") == fold)  # noqa: E731
    ours, theirs = (_daily(pick(run), "pred_1d", "target_1d", False) for run in (a, b))
    keep = sorted(set(ours) & set(theirs) if dates is None else set(dates))
    return np.mean([ours[t] - theirs[t] for t in keep])


def test_each_fold_keeps_the_setting_validation_prefers_and_test_scores_the_choice():
    rng = np.random.default_rng(0)
    this = _run(rng, {0: lambda i: 0.0, 1: lambda i: 1.0})  # fold 0: noise, fold 1: skilled
    other = _run(rng, {0: lambda i: 1.0, 1: lambda i: 0.0})
    picked = choices([(this, other)], "1d", halves=False)
    assert picked == [{0: (False, None), 1: (True, None)}]

    got = chosen_minus_this([(this, other)], picked, "test", "1d", neutral=False)
    # fold 0 scores other minus this, fold 1 this minus itself (0); pooled over both folds' 40 test dates
    expected = (_mean_difference(other, this, "test", 0) * 20 + 0.0 * 20) / 40
    assert got["dates"] == 40
    assert got["mean"] == pytest.approx(expected)
    assert got["mean"] > 0.3


def test_halves_choose_on_the_first_half_and_score_only_the_second():
    rng = np.random.default_rng(1)
    this = _run(rng, {0: lambda i: 0.5})
    other = _run(rng, {0: lambda i: 1.5 if i < 20 else 0.0})  # better early in validation, worse late
    picked = choices([(this, other)], "1d", halves=True)
    keep_this, second = picked[0][0]
    assert keep_this is False
    assert len(second) == 20 and min(second) > max(_daily(this["val"], "pred_1d", "target_1d", False).keys() - set(second))

    got = chosen_minus_this([(this, other)], picked, "val", "1d", neutral=False)
    assert got["dates"] == 20
    assert got["mean"] == pytest.approx(_mean_difference(other, this, "val", 0, second))
    assert got["ci95_high"] < 0  # the choice the first half made loses on the second
