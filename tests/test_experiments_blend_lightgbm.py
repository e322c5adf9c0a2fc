"""experiments/blend_lightgbm.py --margin: a fold keeps the blend's weight only where validation's gain clears the margin."""

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from atft_kedro.evaluation.blend import blend
from tests.evaluation.test_blend import WEIGHTS, _split

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from blend_lightgbm import _with_margin  # noqa: E402


def _folds(rng):
    """Fold 0: LightGBM sees what the model does not (a large validation gain); fold 1: the two see equal halves."""
    val = pl.concat([_split(rng, 0, 30, 60, 5.0, 0.1, fold=0), _split(rng, 40, 30, 60, 0.3, 0.3, fold=1)])
    test = pl.concat([_split(rng, 80, 10, 60, 0.3, 0.3, fold=1), _split(rng, 30, 10, 60, 0.3, 0.3, fold=0)])
    return val, test


def test_no_margin_keeps_what_validation_chose_and_a_large_one_keeps_the_model_alone():
    val, test = _folds(np.random.default_rng(3))
    column, chosen = blend(test, val, "1d", WEIGHTS, min_stocks=20)
    assert chosen["fold0"]["weight"] > 0 and chosen["fold1"]["weight"] > 0
    out, kept = _with_margin(test, val, "1d", chosen, 0.0, min_stocks=20)
    assert kept == {f: {"weight": c["weight"]} for f, c in chosen.items()}
    np.testing.assert_allclose(out, column)

    out, kept = _with_margin(test, val, "1d", chosen, 1e6, min_stocks=20)
    assert kept == {"fold0": {"weight": 0.0}, "fold1": {"weight": 0.0}}
    same = test.with_columns(pl.Series("out", out)).group_by("Date").agg(pl.corr("out", "pred_1d", method="spearman").alias("r"))
    assert same["r"].min() == pytest.approx(1.0)  # each date's order is the model's


def test_a_split_without_folds_is_one_fold():
    rng = np.random.default_rng(4)
    val, test = _split(rng, 0, 30, 60, 5.0, 0.1), _split(rng, 30, 10, 60, 0.3, 0.3)
    column, chosen = blend(test, val, "1d", WEIGHTS, min_stocks=20)
    out, kept = _with_margin(test, val, "1d", chosen, 1.0, min_stocks=20)
    assert kept == {"weight": chosen["weight"]} and chosen["weight"] > 0.5  # a gain far above one standard error
    np.testing.assert_allclose(out, column)
