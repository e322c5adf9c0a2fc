"""experiments/backtest_buffer.py: the buffer's sweep, chosen on validation."""

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from backtest_buffer import sweep, tally, with_traded  # noqa: E402

from atft_kedro.evaluation.backtest import BacktestConfig, long_short_backtest  # noqa: E402


def _forecasts(seed: int, persistence: float) -> pl.DataFrame:
    """40 stocks over 60 days; a score that drifts from day to day (persistence: how much of it stays)
    and predicts the next day's return a little."""
    rng = np.random.default_rng(seed)
    score, rows = rng.normal(size=40), []
    for d in range(60):
        score = persistence * score + np.sqrt(1 - persistence**2) * rng.normal(size=40)
        ret = 0.002 * score + 0.01 * rng.normal(size=40)
        rows += [(dt.date(2020, 1, 1) + dt.timedelta(days=d), f"{i:02d}", float(score[i]), float(ret[i])) for i in range(40)]
    return pl.DataFrame(rows, schema=["Date", "Code", "pred_1d", "target_1d"], orient="row")


def test_a_buffer_trades_less_and_validation_alone_chooses():
    frames = {"val": _forecasts(0, 0.9), "test": _forecasts(1, 0.9)}
    rows = sweep(frames, "1d", [None, 0.3, 0.5], BacktestConfig(quantile=0.2, cost_bp=10))
    turnover = [r["test turnover"] for r in rows]
    assert turnover[0] > turnover[1] > turnover[2]  # the wider the buffer, the less trading
    assert sum(r["chosen"] for r in rows) == 1
    chosen = next(r for r in rows if r["chosen"])
    assert chosen["val ls_sharpe"] == max(r["val ls_sharpe"] for r in rows)
    # test never chooses: the same validation with another test split keeps the choice
    again = sweep({"val": frames["val"], "test": _forecasts(2, 0.0)}, "1d", [None, 0.3, 0.5], BacktestConfig(quantile=0.2, cost_bp=10))
    assert [r["chosen"] for r in again] == [r["chosen"] for r in rows]
    # no buffer is the evaluation's own book
    plain = long_short_backtest(frames["test"], "pred_1d", "target_1d", 1, BacktestConfig(quantile=0.2, cost_bp=10)).summary()
    assert (rows[0]["test ls_sharpe"], rows[0]["test ls_sharpe_gross"], rows[0]["test turnover"]) == (
        plain["ls_sharpe"], plain["ls_sharpe_gross"], plain["turnover"])


def test_the_tally_counts_runs_where_validations_pick_beat_no_buffer_on_test():
    row = lambda hold, val, test, chosen: {"hold": hold, "val ls_sharpe": val, "test ls_sharpe": test, "chosen": chosen}  # noqa: E731
    runs = [
        [row(None, 1.0, 1.0, False), row(0.4, 2.0, 3.0, True)],  # a buffer picked, above on test
        [row(None, 1.0, 2.0, False), row(0.4, 2.0, 1.0, True)],  # a buffer picked, below on test
        [row(None, 2.0, 1.0, True), row(0.4, 1.0, 5.0, False)],  # no buffer picked: not above itself
    ]
    assert tally(runs) == (1, 2)


def test_the_runs_forecasts_carry_its_traded_flag_as_the_evaluations_frame_does(tmp_path):
    forecasts = _forecasts(0, 0.9)
    flags = forecasts.select("Date", "Code").with_columns(traded=pl.col("Code") != "03")
    (tmp_path / "05_model_input").mkdir()
    flags.with_columns(extra=pl.lit(1.0)).reverse().write_parquet(tmp_path / "05_model_input" / "model_input.parquet")
    joined = with_traded(forecasts, tmp_path)
    assert joined.select("Date", "Code").equals(forecasts.select("Date", "Code"))  # the forecasts' rows, in their order
    assert joined["traded"].to_list() == flags["traded"].to_list()
    cfg = BacktestConfig(quantile=0.2, cost_bp=10)
    assert not np.array_equal(long_short_backtest(joined, "pred_1d", "target_1d", 1, cfg).gross,
                              long_short_backtest(forecasts, "pred_1d", "target_1d", 1, cfg).gross)  # fmt: skip

