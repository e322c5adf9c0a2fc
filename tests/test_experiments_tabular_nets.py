"""experiments/tabular_nets.py: its correlation loss, a net that finds what a linear map cannot, and
the forecast added to a run's."""

import sys
from pathlib import Path

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from tabular_nets import added_to_run, correlation_loss, fit_net  # noqa: E402


def test_correlation_loss_is_minus_the_mean_per_date_pearson():
    rng = np.random.default_rng(0)
    date_index = np.repeat(np.arange(4), [5, 7, 6, 9])
    p, y = rng.normal(size=len(date_index)), rng.normal(size=len(date_index))
    expected = -np.mean([np.corrcoef(p[date_index == d], y[date_index == d])[0, 1] for d in range(4)])
    got = correlation_loss(torch.tensor(p), torch.tensor(y), torch.tensor(date_index), 4)
    assert abs(float(got) - expected) < 1e-6


def _market(rng, dates: int, stocks: int = 50):
    """Three features; the target is the square of the first (no linear map ranks it) plus noise."""
    x = rng.normal(size=(dates * stocks, 3))
    y = x[:, 0] ** 2 + 0.5 * rng.normal(size=len(x))
    day = np.repeat(np.arange(dates), stocks)
    return x, y - np.bincount(day, y)[day] / stocks, day


def _rank_ic(day, score, y) -> float:
    frame = pl.DataFrame({"d": day, "s": score, "y": y})
    return float(frame.group_by("d").agg(pl.corr("s", "y", method="spearman"))["s"].mean())


def test_a_net_ranks_a_nonlinear_target_that_the_ridge_cannot():
    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    (xt, yt, dt), (xv, yv, dv), (xs, ys, ds) = (_market(rng, n) for n in (48, 16, 16))
    predict, val_score, _ = fit_net(xt, yt, dt, xv, yv, dv, "corr", seed=0, ridge_coef=None, min_stocks=20, epochs=15)
    linear = np.linalg.lstsq(np.c_[xt, np.ones(len(xt))], yt, rcond=None)[0]
    assert val_score > 0.3
    assert _rank_ic(ds, predict(xs), ys) > 0.3
    assert abs(_rank_ic(ds, xs @ linear[:-1], ys)) < 0.15


def test_added_to_run_takes_in_a_net_that_ranks_where_the_run_does_not(tmp_path, capsys):
    rng = np.random.default_rng(2)
    frames, rows = {}, []
    for name, first in (("validation_predictions", 0), ("predictions", 40)):
        for fold in (0, 1):
            day = np.repeat(np.arange(first + 20 * fold, first + 20 * fold + 20), 30)
            signal = rng.normal(size=len(day))
            target = signal + rng.normal(size=len(day))
            dates = np.datetime64("2020-01-01") + day.astype("timedelta64[D]")
            part = pl.DataFrame({"Date": dates, "Code": np.tile([f"{c:04d}" for c in range(30)], 20), "fold": np.int32(fold),
                                 "pred_1d": rng.normal(size=len(day)), "f": signal, "target_1d": target})  # fmt: skip
            frames.setdefault(name, []).append(part)
            rows.append(part.select("Date", "Code", "f", "target_1d"))
    out = tmp_path / "data" / "07_model_output"
    out.mkdir(parents=True)
    for name, parts in frames.items():
        pl.concat(parts).drop("f", "target_1d").write_parquet(out / f"{name}.parquet")
    model_input = pl.concat(rows).unique(["Date", "Code"])
    added_to_run(tmp_path, {0: lambda x: x[:, 0], 1: lambda x: x[:, 0]}, "net", model_input, ["f"], "target_1d", 0, 20)
    printed = capsys.readouterr().out
    assert "w = {0: 4.0, 1: 4.0}" in printed  # the run's forecast is noise: validation takes the net in at most weight
    test_line = next(line for line in printed.splitlines() if line.startswith("test:"))
    assert float(test_line.split("adds ")[1].split()[0]) > 0.3
