"""experiments/lightgbm_seeds.py: the model's runs against LightGBM's mean over its own seeds."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from lightgbm_seeds import against_seeds  # noqa: E402


def test_each_side_is_averaged_over_its_seeds_date_by_date():
    rng = np.random.default_rng(0)
    days = list(range(200))
    truth = rng.normal(0.02, 0.1, size=len(days))
    # LightGBM's seeds: a shared daily RankIC and each seed's own luck, one of them missing a date
    lightgbm = {s: dict(zip(days, truth + rng.normal(0.0, 0.02, len(days)))) for s in (0, 1, 2)}
    del lightgbm[2][7]
    # the model: 0.01 above LightGBM's mean each date, plus a little noise of its own per run
    mean_lgb = {t: np.mean([lightgbm[s][t] for s in (0, 1) + ((2,) if t != 7 else ())]) for t in days}
    model = [{t: mean_lgb[t] + 0.01 + rng.normal(0.0, 0.001) for t in days} for _ in range(3)]
    c = against_seeds(model, lightgbm, lag=0)
    assert c["dates"] == 199  # date 7 lacks a seed's score: out for everyone
    assert c["mean"] == pytest.approx(c["model"] - c["lightgbm"]) and c["mean"] == pytest.approx(0.01, abs=0.0005)
    assert c["ci95_low"] > 0.009 and c["ci95_high"] < 0.011  # paired per date: LightGBM's shared days cancel
    # against seed 0 alone the difference carries seed 0's own luck: wider
    assert c["seed 0"]["ci95_high"] - c["seed 0"]["ci95_low"] > 5 * (c["ci95_high"] - c["ci95_low"])
    assert set(c["each"]) == {0, 1, 2}
    assert "seed 0" not in against_seeds(model, {1: lightgbm[1], 2: lightgbm[2]}, lag=0)
