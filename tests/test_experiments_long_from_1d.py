"""experiments/long_from_1d.py: the long horizons switched to the 1-day forecast where validation
prefers it, or (``--blend``) the two averaged as per-date z-scores."""

import json
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import long_from_1d  # noqa: E402

HORIZONS = ("1d", "5d", "10d", "20d")


def _frame(rng, n_dates: int, start: int, stocks: int = 30) -> pl.DataFrame:
    """Rows whose 1-day forecast tracks every target and whose long heads are noise."""
    parts = []
    for i in range(n_dates):
        common = rng.normal(size=stocks)
        cols = {f"target_{h}": common + rng.normal(size=stocks) for h in HORIZONS}
        cols["pred_1d"] = 3.0 * common + 0.5 * rng.normal(size=stocks) + 10.0  # another scale and level than the heads
        cols.update({f"pred_{h}": rng.normal(size=stocks) for h in HORIZONS[1:]})
        day = date(2020, 1, 1) + timedelta(days=start + i)
        parts.append(pl.DataFrame({"Date": [day] * stocks, "Code": [f"{c:04d}" for c in range(stocks)], **cols}))
    return pl.concat(parts)


def _runs(tmp_path, rng) -> Path:
    val, test = _frame(rng, 40, 0), _frame(rng, 40, 100)
    val.write_parquet(tmp_path / "v.parquet")
    test.write_parquet(tmp_path / "t.parquet")
    runs = tmp_path / "runs.json"
    runs.write_text(json.dumps([{"seed": 0, "frame": str(tmp_path / "t.parquet"), "val_frame": str(tmp_path / "v.parquet"), "metrics": {}}]))
    return runs


def _main(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["long_from_1d.py", *args])
    long_from_1d.main()


def test_validation_switches_to_the_one_day_forecast_where_it_ranks_better(tmp_path, monkeypatch, capsys):
    _main(monkeypatch, "--runs", str(_runs(tmp_path, np.random.default_rng(0))), "--out", str(tmp_path / "out"))
    switched = pl.read_parquet(tmp_path / "out" / "run0.parquet")
    for h in HORIZONS[1:]:  # the heads are noise: every horizon takes the 1-day forecast
        assert switched[f"pred_{h}"].equals(switched["pred_1d"].alias(f"pred_{h}"))
    assert capsys.readouterr().out.count("| 1-day forecast |") == 3


def test_the_blend_averages_the_two_forecasts_as_per_date_z_scores(tmp_path, monkeypatch, capsys):
    runs = _runs(tmp_path, np.random.default_rng(1))
    _main(monkeypatch, "--runs", str(runs), "--out", str(tmp_path / "out"), "--blend")
    before, after = pl.read_parquet(tmp_path / "t.parquet"), pl.read_parquet(tmp_path / "out" / "run0.parquet")
    for day in before["Date"].unique().to_list()[:3]:
        b, a = before.filter(pl.col("Date") == day), after.filter(pl.col("Date") == day)
        z = lambda x: (x - x.mean()) / x.std(ddof=1)  # noqa: E731
        for h in HORIZONS[1:]:
            np.testing.assert_allclose(a[f"pred_{h}"].to_numpy(), (z(b["pred_1d"].to_numpy()) + z(b[f"pred_{h}"].to_numpy())) / 2, rtol=1e-12)
        assert a["pred_1d"].equals(b["pred_1d"])  # the 1-day forecast itself is untouched
    assert capsys.readouterr().out.count("| both |") == 3
