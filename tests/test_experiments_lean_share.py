"""experiments/lean_share.py: a run's heads come back exactly from its leaned forecasts at a saved
share up to 0.5 (above it the script refuses), and leaning them again at another share is the
evaluation's lean of the heads."""

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import lean_share  # noqa: E402

from atft_kedro.training.predict import lean_on_one_day  # noqa: E402


def _heads(rng) -> pl.DataFrame:
    """Six dates of forty stocks; each long head correlated with the 1-day forecast by a date's own amount."""
    rows = []
    for t in range(6):
        one_day = rng.normal(size=40) * (1 + t)
        rho = -0.6 + 0.25 * t
        long = {f"pred_{h}d": 0.01 * h + (rho * one_day / (1 + t) + np.sqrt(1 - rho**2) * rng.normal(size=40)) * 0.3 * h for h in (5, 10, 20)}
        rows.append(pl.DataFrame({"Date": [t] * 40, "pred_1d": one_day, **long}))
    return pl.concat(rows)


@pytest.mark.parametrize("saved", [0.5, 0.3, 0.1])
def test_the_heads_come_back_from_the_leaned_forecasts(saved):
    heads = _heads(np.random.default_rng(1))
    leaned = lean_on_one_day(heads, saved)
    assert not np.allclose(leaned["pred_20d"], heads["pred_20d"])  # the lean moved them
    back = lean_share.heads(leaned, saved)
    for h in lean_share.LONG:
        np.testing.assert_allclose(back[f"pred_{h}"], heads[f"pred_{h}"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(lean_share.releaned(leaned, saved, 0.25)["pred_10d"], lean_on_one_day(heads, 0.25)["pred_10d"], rtol=1e-9, atol=1e-9)
    assert not np.allclose(lean_share.heads(leaned, 0.2 if saved != 0.2 else 0.4)["pred_5d"], heads["pred_5d"])  # another share gives other heads


def test_a_share_above_one_half_is_refused():
    """Above 0.5 two heads fit the same leaned forecast, so the script does not pick one."""
    with pytest.raises(ValueError, match=r"share in \(0, 0.5\] only"):
        lean_share.heads(lean_on_one_day(_heads(np.random.default_rng(2)), 0.7), 0.7)
