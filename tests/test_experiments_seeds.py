"""experiments/seeds.py: two settings on the same seeds, paired per date."""

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))


def _run(tmp_path: Path, name: str, seed: int, sign: float, rng) -> dict:
    """A run whose forecasts are ``sign`` times the 1-day target plus noise, on 30 dates of 40 stocks."""
    dates = np.repeat(np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-31")), 40)
    target = rng.normal(size=len(dates))
    frame = pl.DataFrame({"Date": dates, "Code": np.tile([f"{c:04d}" for c in range(40)], 30), "target_1d": target,
                          "pred_1d": sign * target + 0.5 * rng.normal(size=len(dates))})  # fmt: skip
    paths = {}
    for key in ("frame", "val_frame"):
        paths[key] = str(tmp_path / f"{name}_{seed}_{key}.parquet")
        frame.write_parquet(paths[key])
    return {"seed": seed, **paths}


def test_two_settings_are_compared_date_by_date_and_must_pair(tmp_path):
    import seeds

    rng = np.random.default_rng(0)
    good = [_run(tmp_path, "good", s, 1.0, rng) for s in (0, 1)]
    bad = [_run(tmp_path, "bad", s, -1.0, rng) for s in (0, 1)]
    table = seeds.settings_report(good, bad)
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| 1d")]
    assert len(rows) == 2  # validation and test; no beta or sector columns: no neutral table
    for row in rows:
        this, other, difference = float(row[1]), float(row[2]), float(row[3])
        assert this > 0.8 and other < -0.8
        assert difference == pytest.approx(this - other, abs=2e-4)
        low, high = (float(x) for x in row[4].strip("[]").split(", "))
        assert low < difference < high and low > 1.5
    with pytest.raises(SystemExit, match="as many runs"):
        seeds.settings_report(good, bad[:1])
