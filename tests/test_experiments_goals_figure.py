"""experiments/goals_figure.py: the goals' standing per market, as seeds.py --markets computes it."""

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

SCORERS = ("momentum_20d", "reversal_1d", "ridge_1d", "lightgbm_1d")


def _draw(tmp_path: Path, name: str, model: float, baselines: tuple, rng) -> Path:
    """One draw's runs file: 30 dates of 40 stocks in 4 sectors, every scorer a planted share of a
    signal the 1-day target carries, and the baselines' validation RankIC (reversal first)."""
    n_dates, n_stocks = 30, 40
    dates = np.repeat(np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-01") + n_dates), n_stocks)
    signal = rng.normal(size=len(dates))
    frame = pl.DataFrame({"Date": dates, "Code": np.tile([f"{c:04d}" for c in range(n_stocks)], n_dates),
                          "beta_60d": np.tile(rng.uniform(0.5, 1.5, n_stocks), n_dates),
                          "Sector33Code": np.tile(np.arange(n_stocks) % 4, n_dates).astype(str),
                          "target_1d": signal + rng.normal(size=len(dates)), "pred_1d": model * signal + rng.normal(size=len(dates)),
                          **{c: s * signal + rng.normal(size=len(dates)) for c, s in zip(SCORERS, baselines)}})  # fmt: skip
    frame.write_parquet(tmp_path / f"{name}.parquet")
    on_val = {"momentum_20d": 0.01, "reversal_1d": 0.05, "ridge": 0.02, "lightgbm": 0.03}
    run = {"seed": 0, "frame": str(tmp_path / f"{name}.parquet"), "metrics": {"baselines": {b: {"1d": {"val_rank_ic": v}} for b, v in on_val.items()}}}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps([run]))
    return path


def test_the_standing_is_seeds_markets_numbers_with_the_draws_interval(tmp_path, monkeypatch, capsys):
    """Per market the draws' mean and the dates' interval are ``markets_report``'s; the draws'
    interval is there with two draws or more; the pick row pairs the model with reversal (first on
    validation), not with the best on test (momentum); a market above every baseline stands above 0
    and one below the best stands below it; the figure and the JSON are written."""
    import goals_figure
    import seeds

    rng = np.random.default_rng(3)
    strong = [_draw(tmp_path, f"strong{i}", 0.9, (0.4, 0.1, 0.2, 0.3), rng) for i in range(3)]
    weak = [_draw(tmp_path, f"weak{seed}", 0.2, (0.8, 0.1, 0.3, 0.2), rng) for seed in (0, 1)]  # one draw, two seeds' files
    out = tmp_path / "figure" / "goals"
    argv = ["goals_figure.py", "--market", "strong=" + ",".join(map(str, strong)), "--market", "weak=" + "+".join(map(str, weak)), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    goals_figure.main()
    table = capsys.readouterr().out
    standing = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".png").stat().st_size > 10_000 and set(standing) == {"strong", "weak"}

    reference = seeds.markets_report([seeds.saved_runs([p]) for p in strong])
    for measure, title in (("best", "best baseline on test"), ("pick", "the baseline validation picks")):
        part = reference.split(f"### model - {title}, per market, test RankIC\n")[1]
        row = next(line for line in part.splitlines() if line.startswith("| 1d")).split(" | ")
        c = standing["strong"][measure]["raw"]["1d"]
        assert c["mean"] == pytest.approx(float(row[4]), abs=1e-4) and [round(v, 4) for v in c["each"]] == [float(x.split(" [")[0]) for x in row[1:4]]
        low, high = (float(v) for v in row[5].strip("[]").split(", "))
        draws_low, draws_high = (float(v) for v in row[6].strip("[]").split(", "))
        assert (c["ci95_low"], c["ci95_high"], c["draws_low"], c["draws_high"]) == pytest.approx((low, high, draws_low, draws_high), abs=1e-4)
        assert c["ci95_low"] > 0 and c["draws_low"] > 0  # the model above every baseline in every draw
    weak_alone = seeds.against_best([pl.read_parquet(r["frame"]) for r in seeds.saved_runs(weak)], "1d", False)  # both seeds pooled
    assert standing["weak"]["best"]["raw"]["1d"]["mean"] == pytest.approx(weak_alone["mean"]) and standing["weak"]["draws"] == 1
    assert standing["weak"]["best"]["raw"]["1d"]["ci95_high"] < 0 and standing["weak"]["best"]["raw"]["1d"]["draws_low"] is None
    assert standing["weak"]["pick"]["raw"]["1d"]["mean"] > standing["weak"]["best"]["raw"]["1d"]["mean"]  # reversal, weaker on test
    assert set(standing["strong"]["best"]) == {"raw", "neutral"} and standing["strong"]["draws"] == 3
    assert "| strong | 3 | 1d |" in table and "; draws [" in table and "| weak | 1 | 1d |" in table
    monkeypatch.setattr(sys, "argv", ["goals_figure.py", "--market", "no name", "--out", str(out)])
    with pytest.raises(SystemExit, match="NAME=DRAW"):
        goals_figure.main()
