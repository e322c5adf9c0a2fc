"""experiments/ridge_penalties.py: the ridge's limit as its penalty grows is the features'
covariance with the target, which ranks as a ridge with a penalty far above the design's scale."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import ridge_penalties  # noqa: E402
from atft_kedro.evaluation.baselines import ridge_solve  # noqa: E402


def test_the_covariance_weights_are_the_ridges_direction_at_a_very_large_penalty_and_not_at_a_small_one():
    rng = np.random.default_rng(0)
    common = rng.normal(size=(2000, 1))
    x = common + 0.3 * rng.normal(size=(2000, 6)) + 5.0  # correlated columns, off centre
    y = x @ np.array([1.0, -1.0, 0.5, 0.0, 0.0, 2.0]) + rng.normal(size=2000)
    w = ridge_penalties.covariance_weights(x, y)
    far = ridge_solve(x, y, 1e12)[:-1]
    near = ridge_solve(x, y, 1e-3)[:-1]
    cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
    assert cos(w, far) > 1 - 1e-9
    assert cos(w, near) < 0.9  # least squares shares the signal out otherwise


def test_the_fits_can_be_made_on_neutral_targets_and_are_scored_on_the_returns_either_way():
    """``--neutral-targets``: the fits move with the targets they are made on, the scoring rows do not
    (fitting on the market's own model input is the default, to the digit)."""
    from _folds import market
    from atft_kedro.features.splits import split_dates
    from atft_kedro.features.targets import neutralise_targets

    mk = market('{"raw": {"synthetic_size": "tiny"}, "evaluation": {"min_stocks": 10}}')
    train, val = (split_dates(mk.splits, s, 0) for s in ("train", "val"))
    own = ridge_penalties.validation_scores(mk, "20d", train, val, [1e3])
    assert ridge_penalties.validation_scores(mk, "20d", train, val, [1e3], mk.model_input) == own
    neutral = ridge_penalties.validation_scores(mk, "20d", train, val, [1e3], neutralise_targets(mk.model_input))
    assert len(neutral) == len(own) == 2 and neutral[0] != own[0]
