import datetime as dt

import numpy as np
import polars as pl
import pytest
from scipy import stats

from atft_kedro.evaluation.backtest import BacktestConfig, long_short_backtest
from atft_kedro.evaluation.baselines import fit_ridge, ridge_scores
from atft_kedro.evaluation.metrics import daily_scores, neutral_scores, summarise
from atft_kedro.evaluation.report import METRIC_KEYS, NEUTRAL_KEYS, markdown_report, metrics_document

D0 = dt.date(2024, 1, 1)


def _frame(rows):
    return pl.DataFrame(rows, schema=["Date", "Code", "s", "y"], orient="row")


def test_ic_and_rank_ic_equal_scipy_and_pandas_with_ties_and_nan():
    rng = np.random.default_rng(0)
    rows = []
    for d in range(3):
        s = np.round(rng.normal(size=25), 1)  # rounding makes ties
        y = rng.normal(size=25)
        y[3] = np.nan
        s[7] = np.nan
        rows += [(D0 + dt.timedelta(days=d), f"{i:04d}0", s[i], y[i]) for i in range(25)]
    frame = _frame(rows).with_columns(pl.col("s").fill_nan(None))
    d = daily_scores(frame, "s", "y", min_stocks=10)
    pdf = frame.to_pandas().dropna()
    expected_ic = [np.corrcoef(g.s, g.y)[0, 1] for _, g in pdf.groupby("Date")]
    expected_ric = [stats.spearmanr(g.s, g.y).statistic for _, g in pdf.groupby("Date")]
    np.testing.assert_allclose(d.ic, expected_ic, rtol=1e-10)
    np.testing.assert_allclose(d.rank_ic, expected_ric, rtol=1e-10)
    assert d.pairs == len(pdf)
    summary = summarise(d)
    assert summary["icir"] == pytest.approx(np.mean(expected_ic) / np.std(expected_ic, ddof=1))


def test_too_few_stocks_dates_are_skipped_and_counted():
    rows = [(D0, f"{i}", float(i), float(i)) for i in range(30)]
    rows += [(D0 + dt.timedelta(days=1), f"{i}", float(i), -float(i)) for i in range(5)]
    d = daily_scores(_frame(rows), "s", "y", min_stocks=20)
    assert len(d.ic) == 1 and d.skipped_dates == 1
    assert summarise(d)["rank_ic"] == pytest.approx(1.0)  # not (1 + 0) / 2


def test_backtest_return_turnover_and_cost_by_hand():
    # 4 stocks, quantile 0.25 -> one long, one short; three daily rebalances
    s = {0: [4, 3, 2, 1], 1: [4, 3, 2, 1], 2: [1, 2, 3, 4]}
    y = {0: [0.03, 0.0, 0.0, -0.01], 1: [0.02, 0.0, 0.0, 0.01], 2: [0.0, 0.0, 0.0, 0.05]}
    rows = [(D0 + dt.timedelta(days=d), c, float(s[d][i]), y[d][i]) for d in range(3) for i, c in enumerate("ABCD")]
    r = long_short_backtest(_frame(rows), "s", "y", 1, BacktestConfig(quantile=0.25, cost_bp=10, min_stocks=4))
    # day 0: long A short D: 0.03 - (-0.01) = 0.04, turnover 2 (from flat)
    # day 1: same book: 0.02 - 0.01 = 0.01, turnover 0
    # day 2: long D short A: 0.05 - 0.0 = 0.05, turnover 4
    np.testing.assert_allclose(r.gross, [0.04, 0.01, 0.05])
    np.testing.assert_allclose(r.turnover, [2.0, 0.0, 4.0])
    np.testing.assert_allclose(r.net, [0.04 - 0.002, 0.01, 0.05 - 0.004])
    summary = r.summary()
    curve = np.cumprod(1 + r.net)
    assert summary["ls_ann_return"] == pytest.approx(curve[-1] ** (252 / 3) - 1)
    # Sharpe after costs and before: mean / sample sd of the period returns, annualised for daily periods
    assert summary["ls_sharpe"] == pytest.approx(np.mean(r.net) / np.std(r.net, ddof=1) * np.sqrt(252))
    assert summary["ls_sharpe_gross"] == pytest.approx(0.1 / 3 / np.std([0.04, 0.01, 0.05], ddof=1) * np.sqrt(252))
    assert summary["ls_sharpe_gross"] != pytest.approx(summary["ls_sharpe"])
    assert summary["max_drawdown"] == 0.0
    assert summary["turnover"] == pytest.approx(2.0)


def test_a_buffer_keeps_held_stocks_within_the_hold_quantile_and_the_book_size():
    # 10 stocks, quantile 0.2 -> two long, two short; hold_quantile 0.4 -> a held stock stays in the top (bottom) 4
    day0 = {c: float(i) for i, c in enumerate("ABCDEFGHIJ")}  # long J, I; short A, B
    day1 = {**day0, "J": 6.5, "I": 5.5, "A": 7.5, "B": 2.5}  # ascending: C 2, B 2.5, D 3, E 4, F 5, I 5.5, G 6, J 6.5, H 7, A 7.5
    rows = [(D0 + dt.timedelta(days=d), c, s, 0.01 * s) for d, day in enumerate((day0, day1)) for c, s in day.items()]
    cfg = BacktestConfig(quantile=0.2, cost_bp=0, min_stocks=10, hold_quantile=0.4)
    r = long_short_backtest(_frame(rows), "s", "y", 1, cfg)
    # long: J kept (3rd from the top: A, H, J), I dropped (5th), the best other is A -> long J, A
    # short: B kept (2nd from the bottom), A dropped (it ranks at the top) -> the lowest other, C -> short C, B
    assert r.gross[1] == pytest.approx((0.065 + 0.075) / 2 - (0.02 + 0.025) / 2)
    assert r.turnover[1] == pytest.approx(4 * 0.5)  # I out and A in (long), A out and C in (short): 0.5 each
    plain = long_short_backtest(_frame(rows), "s", "y", 1, BacktestConfig(quantile=0.2, cost_bp=0, min_stocks=10))
    assert plain.gross[1] == pytest.approx((0.075 + 0.07) / 2 - (0.02 + 0.025) / 2)  # the top two, A and H; the bottom two, C and B
    assert plain.turnover[1] == pytest.approx(6 * 0.5)  # J, I out and A, H in; A out and C in
    assert r.gross[0] == plain.gross[0] and r.turnover[0] == plain.turnover[0]  # from flat the buffer holds nothing


def test_missing_exit_price_counts_flat_and_holding_does_not_overlap():
    rows = []
    for d in range(10):
        for i, c in enumerate("ABCDE"):
            rows.append((D0 + dt.timedelta(days=d), c, float(i), 0.01 * (i - 2) if c != "E" else None))
    r = long_short_backtest(_frame(rows), "s", "y", 5, BacktestConfig(quantile=0.2, cost_bp=0, min_stocks=5))
    assert r.dates == [D0, D0 + dt.timedelta(days=5)]  # every 5th date for h = 5
    np.testing.assert_allclose(r.gross, [0.0 - (-0.02)] * 2)  # long E (no exit price: 0), short A


@pytest.mark.parametrize("horizon", [1, 5])
def test_a_period_not_yet_over_at_the_end_of_the_data_is_left_out_not_booked_flat(horizon):
    """The data's last h dates have no h-day return yet: a rebalance among them would trade, pay
    costs and earn 0, and the Sharpe of a short test split would be pulled toward such periods."""
    rng = np.random.default_rng(5)
    n_dates, n_known = 23, 23 - horizon
    rows = [(D0 + dt.timedelta(days=d), f"{i:02d}", float(rng.normal()), float(rng.normal()) * 0.01 if d < n_known else None)
            for d in range(n_dates) for i in range(20)]  # fmt: skip
    cfg = BacktestConfig(quantile=0.2, cost_bp=10, min_stocks=10)
    r = long_short_backtest(_frame(rows), "s", "y", horizon, cfg)
    rebalances = list(range(0, n_dates, horizon))
    assert [d.day - 1 for d in r.dates] == [d for d in rebalances if d < n_known]
    assert r.skipped_dates == sum(d >= n_known for d in rebalances) >= 1
    assert (r.gross != 0).all() and len(r.net) == len(r.turnover) == len(r.dates)
    known = long_short_backtest(_frame([row for row in rows if row[3] is not None]), "s", "y", horizon, cfg)
    np.testing.assert_array_equal(r.net, known.net)  # the same book as if the data ended at the last known return


def test_a_stock_that_did_not_trade_on_the_rebalance_date_is_not_held():
    """A suspended stock keeps its forecast, but it has no price at t to buy or sell at."""
    rows = [(D0, c, float(i), 0.01 * i) for i, c in enumerate("ABCDEFGHIJK")]  # K scores highest
    frame = _frame(rows).with_columns(traded=pl.col("Code") != "K")
    cfg = BacktestConfig(quantile=0.2, cost_bp=0, min_stocks=5)
    r = long_short_backtest(frame, "s", "y", 1, cfg)
    assert r.gross[0] == pytest.approx((0.08 + 0.09) / 2 - (0.0 + 0.01) / 2)  # long I and J, of the ten that traded; short A and B
    assert long_short_backtest(frame.drop("traded"), "s", "y", 1, cfg).gross[0] == pytest.approx((0.09 + 0.10) / 2 - 0.005)  # without the flag: K


def test_a_prediction_at_t_only_meets_returns_after_t():
    rng = np.random.default_rng(3)
    rows = [(D0 + dt.timedelta(days=d), f"{i:02d}", float(rng.normal()), float(rng.normal()) * 0.01) for d in range(12) for i in range(30)]
    base = _frame(rows)
    cfg = BacktestConfig(quantile=0.2, cost_bp=0, min_stocks=10)
    a = long_short_backtest(base, "s", "y", 1, cfg)
    day = D0 + dt.timedelta(days=6)
    changed = base.with_columns(pl.when(pl.col("Date") == day).then(-pl.col("s")).otherwise(pl.col("s")).alias("s"))
    b = long_short_backtest(changed, "s", "y", 1, cfg)
    differs = ~np.isclose(a.gross, b.gross)
    assert differs.tolist() == [d == day for d in a.dates]  # only the period that starts at t moves
    # and the period's return is the forward target of the chosen stocks
    g = base.filter(pl.col("Date") == day).sort("s", "Code")
    assert a.gross[6] == pytest.approx(g.tail(6)["y"].mean() - g.head(6)["y"].mean())


def test_too_few_stocks_on_a_rebalance_date_is_skipped_and_counted():
    rows = [(D0, c, float(i), 0.01) for i, c in enumerate("ABCDE")] + [(D0 + dt.timedelta(days=1), "A", 1.0, 0.01)]
    r = long_short_backtest(_frame(rows), "s", "y", 1, BacktestConfig(min_stocks=5))
    assert len(r.net) == 1 and r.skipped_dates == 1


def test_ridge_is_fitted_on_training_dates_only():
    rng = np.random.default_rng(0)
    n = 400
    dates = [D0 + dt.timedelta(days=i % 20) for i in range(n)]
    x = rng.normal(size=(20, 20))
    x = (x - x.mean(axis=1, keepdims=True)).T.reshape(-1)  # zero mean on every date
    y = np.where(np.array([d.day for d in dates]) < 11, x, -x)  # the relation flips after day 10
    mi = pl.DataFrame({"Date": dates, "f": x, "target_1d": y})
    train = [D0 + dt.timedelta(days=i) for i in range(10)]
    coef = fit_ridge(mi, ["f"], "target_1d", train, alpha=1e-6)
    assert coef[0] == pytest.approx(1.0, abs=1e-6)
    assert np.corrcoef(ridge_scores(mi, ["f"], coef), x)[0, 1] == pytest.approx(1.0)


def test_metrics_document_has_the_spec_shape():
    row = {k: 0.1 for k in METRIC_KEYS}
    doc = metrics_document({"1d": {"model": row, "oracle": {**row, "ic": float("nan")}}})
    assert list(doc) == ["horizons"]
    assert list(doc["horizons"]["1d"]["model"]) == list(METRIC_KEYS)
    assert doc["horizons"]["1d"]["oracle"]["ic"] is None
    # SPEC section 7's keys, and the Sharpe before costs beside them
    assert set(METRIC_KEYS) == {"ic", "rank_ic", "icir", "rank_icir", "hit_rate", "ls_sharpe", "ls_ann_return", "max_drawdown", "turnover",
                                "ls_sharpe_gross"}  # fmt: skip


def test_neutral_scores_separate_bets_on_the_market_and_sectors_from_stock_picking():
    """Returns = beta x the date's market move + the sector's move + a stock-specific part. A score
    equal to beta ranks well in a rising market (every date rises here) but has nothing left once
    beta is out; one equal to the sector's move keeps its RankIC without beta and loses it without
    sectors; one equal to the stock-specific part keeps it throughout."""
    rng = np.random.default_rng(0)
    rows = []
    for day in range(30):
        beta, sector = rng.uniform(0.5, 1.5, 200), rng.integers(0, 8, 200)
        sector_move, own = rng.normal(0.0, 0.01, 8)[sector], rng.normal(0.0, 0.01, 200)
        y = beta * 0.03 + sector_move + own + rng.normal(0.0, 0.002, 200)
        date = D0 + dt.timedelta(days=day)
        rows += [(date, f"{i}", *v) for i, v in enumerate(zip(beta, sector.astype(str), sector_move, own, y))]
    frame = pl.DataFrame(rows, schema=["Date", "Code", "beta", "sector", "sector_move", "own", "y"], orient="row")

    def scores(col, **kw):
        return neutral_scores(frame, col, "y", "beta", "sector", **kw)

    bet, sector_bet, picker = scores("beta"), scores("sector_move"), scores("own")
    assert summarise(daily_scores(frame, "beta", "y"))["rank_ic"] > 0.4  # the plain RankIC rewards the bet
    assert bet["beta_exposure"] == pytest.approx(1.0)
    assert abs(bet["rank_ic_beta_neutral"]) < 0.05 and abs(bet["rank_ic_sector_beta_neutral"]) < 0.05
    assert sector_bet["rank_ic_beta_neutral"] > 0.4 and abs(sector_bet["rank_ic_sector_beta_neutral"]) < 0.1
    assert abs(picker["beta_exposure"]) < 0.05
    assert picker["rank_ic_beta_neutral"] > 0.6 and picker["rank_ic_sector_beta_neutral"] > 0.9
    # a date with one beta for all, or too few stocks, is skipped, not counted as 0
    flat = frame.with_columns(pl.when(pl.col("Date") == D0).then(1.0).otherwise(pl.col("beta")).alias("beta"))
    assert neutral_scores(flat, "own", "y", "beta", "sector") == pytest.approx(
        neutral_scores(frame.filter(pl.col("Date") != D0), "own", "y", "beta", "sector")
    )
    assert np.isnan(scores("own", min_stocks=500)["beta_exposure"])


def test_the_neutral_section_of_metrics_and_report():
    row = {k: 0.1 for k in METRIC_KEYS}
    neutral = {"beta_exposure": float("nan"), "rank_ic_beta_neutral": 0.02, "rank_ic_sector_beta_neutral": 0.01}
    doc = metrics_document({"1d": {"model": row}}, {"1d": {"model": neutral}})
    assert list(doc) == ["horizons", "neutral"]
    assert doc["neutral"]["1d"]["model"] == {"beta_exposure": None, "rank_ic_beta_neutral": 0.02, "rank_ic_sector_beta_neutral": 0.01}
    assert list(NEUTRAL_KEYS) == list(doc["neutral"]["1d"]["model"])
    context = {"source": "synthetic", "n_dates": 1, "start": D0, "end": D0, "n_stocks": 1, "quantile": 0.2, "cost_bp": 10}
    report = markdown_report(doc, {"1d": {"model": (1, 0)}}, context)
    assert "## Without the market and the sectors" in report and "| model | 0.1000 | n/a | 0.0200 | 0.0100 |" in report
    assert "leans on the 1-day forecast" not in report
    leaning = markdown_report(doc, {"1d": {"model": (1, 0)}}, {**context, "one_day_share": 0.5})
    assert "Each 5-20 day forecast leans on the 1-day forecast, 50% of its ranking's weight (`forecast.one_day_share`)." in leaning


def test_a_model_checkpoint_from_another_model_size_is_a_clear_error():
    from dataclasses import asdict

    from atft_kedro.model import ATFTGATFAN, ModelConfig
    from atft_kedro.pipelines.evaluation.nodes import predict_test
    from atft_kedro.training.checkpoints import FORMAT, TrainingError

    small = ModelConfig(n_features=5, n_market=3, d_model=16, temporal_heads=2, gat_heads=2)
    wider = ATFTGATFAN(ModelConfig(n_features=5, n_market=3, d_model=32, temporal_heads=2, gat_heads=2))
    model = {"config": {"model": asdict(small), "train": {}, "phase": 3}, "model": wider.state_dict(), "format": FORMAT}
    with pytest.raises(TrainingError, match=r"the catalog's model checkpoint does not fit this model .*--params phase=3\)"):
        predict_test(model, None, None, pl.DataFrame({"fold": [0], "split": ["test"]}), None)


def test_the_feature_importance_refuses_validation_forecasts_of_another_model():
    """The feature importance scores against the saved validation forecasts: forecasts stamped with
    another model (or none) stop it before any work, naming both models (the end-to-end test sees
    the evaluation's own check from the command line, after one phase is trained again)."""
    from atft_kedro.pipelines.evaluation.nodes import feature_importance
    from atft_kedro.provenance import StaleArtifactError

    model = {"config": {"phase": 2}, "epoch": 0, "saved_at": "t1"}
    stale = pl.DataFrame({"Date": [1], "Code": ["A"], "model_id": ["phase 3 epoch 0 saved t0"]})
    said = r"the validation_predictions were made by another model \(phase 3 epoch 0 saved t0\) than the catalog's \(phase 2 epoch 0 saved t1\)"
    with pytest.raises(StaleArtifactError, match=said):
        feature_importance(model, None, None, None, None, stale, [], {})
    with pytest.raises(StaleArtifactError, match=r"the validation_predictions were made by another model \(no model_id\)"):
        feature_importance(model, None, None, None, None, stale.drop("model_id"), [], {})


def test_newey_west_error_of_overlapping_sums_counts_the_overlap():
    """Daily h-day targets overlap: sums of h consecutive iid shocks (variance 1) have autocovariances
    h - k at lag k < h. Bartlett weights 1 - k/h at lag h - 1 give the long-run variance
    h + 2 sum_k (1 - k/h)(h - k) = 17 for h = 5, against a variance of 5 for one sum."""
    from atft_kedro.evaluation.metrics import newey_west_se

    rng = np.random.default_rng(0)
    h, n = 5, 40_000
    overlapping = np.convolve(rng.normal(size=n + h - 1), np.ones(h), mode="valid")  # (n,)
    plain = newey_west_se(overlapping, 0)
    assert plain == pytest.approx(overlapping.std() / np.sqrt(n))
    assert newey_west_se(overlapping, h - 1) * np.sqrt(n) == pytest.approx(np.sqrt(17), rel=0.05)
    assert plain * np.sqrt(n) == pytest.approx(np.sqrt(h), rel=0.05)
    e = overlapping[:50] - overlapping[:50].mean()  # the Bartlett sum written out
    by_hand = (e @ e + 2 * sum((1 - k / 3) * e[k:] @ e[:-k] for k in (1, 2))) / 50
    assert newey_west_se(overlapping[:50], 2) == pytest.approx(np.sqrt(by_hand / 50))


def test_overlap_lag_is_the_horizon_less_one_day_and_refuses_other_names():
    from atft_kedro.evaluation.metrics import overlap_lag

    assert [overlap_lag(h) for h in ("1d", "5d", "10d", "20d")] == [0, 4, 9, 19]
    for bad in ("d", "0d", "5", "5w", "-1d", "1.5d"):
        with pytest.raises(ValueError, match=repr(bad)):
            overlap_lag(bad)


def test_paired_difference_pairs_dates_and_brackets_the_mean():
    from atft_kedro.evaluation.metrics import DailyScores, paired_difference

    dates = [D0 + dt.timedelta(days=i) for i in range(4)]
    a = DailyScores(dates, np.zeros(4), np.array([0.3, 0.1, 0.2, 0.4]), 0, 0, 0)
    b = DailyScores(dates[1:], np.zeros(3), np.array([0.0, 0.1, 0.1]), 0, 0, 0)  # no score on the first date
    p = paired_difference(a, b, lag=0)
    assert p["dates"] == 3 and p["mean"] == pytest.approx(np.mean([0.1, 0.1, 0.3]))
    assert p["ci95_low"] < p["mean"] < p["ci95_high"]
    assert p["ci95_high"] - p["mean"] == pytest.approx(1.96 * np.std([0.1, 0.1, 0.3]) / np.sqrt(3))


def test_forecast_parts_say_which_path_the_ranking_comes_from():
    """A forecast = an informative path + a noise path + a path that is 0: the informative one adds
    RankIC (interval above 0), the noise takes some away, the zero path is left out; each path's
    RankIC alone is a per-date Spearman correlation, and the forecast without the noise is the
    informative path."""
    from atft_kedro.evaluation.evaluate import forecast_parts

    rng = np.random.default_rng(0)
    n_dates, n_stocks = 60, 50
    y = rng.normal(size=(n_dates, n_stocks))
    signal, noise = 0.3 * y + rng.normal(size=y.shape), 2.0 * rng.normal(size=y.shape)
    frame = pl.DataFrame({
        "Date": [D0 + dt.timedelta(days=i) for i in range(n_dates) for _ in range(n_stocks)], "target_5d": y.ravel(),
        "pred_5d": (signal + noise).ravel(), "part_own_5d": signal.ravel(), "part_network_5d": noise.ravel(), "part_neighbours_5d": 0.0,
    })  # fmt: skip
    parts = forecast_parts(frame, "5d", daily_scores(frame, "pred_5d", "target_5d", 20), 20)
    assert set(parts) == {"own", "network"}
    own, network = parts["own"], parts["network"]
    spearman = np.mean([stats.spearmanr(signal[d], y[d])[0] for d in range(n_dates)])
    assert own["rank_ic_alone"] == pytest.approx(spearman) and network["rank_ic_without"] == pytest.approx(spearman)
    assert own["adds"]["ci95_low"] > 0 and network["adds"]["mean"] < 0 and own["adds"]["dates"] == n_dates
    forecast = summarise(daily_scores(frame, "pred_5d", "target_5d", 20))["rank_ic"]
    assert own["adds"]["mean"] == pytest.approx(forecast - own["rank_ic_without"])
    share = np.mean(signal.std(axis=1, ddof=1) / (signal + noise).std(axis=1, ddof=1))
    assert own["spread"] == pytest.approx(share)
    assert forecast_parts(frame.drop("part_own_5d", "part_network_5d", "part_neighbours_5d"), "5d", daily_scores(frame, "pred_5d", "target_5d"), 20) == {}


def _regression_market(rng, n_dates=60, n_stocks=80):
    """Per date a feature ``f`` and a noise feature ``g``; the target is a nonlinear function of f."""
    dates = pl.Series([D0 + dt.timedelta(days=i) for i in range(n_dates)]).gather(np.repeat(np.arange(n_dates), n_stocks))
    f, g = rng.normal(size=len(dates)), rng.normal(size=len(dates))
    y = np.abs(f) + 0.3 * rng.normal(size=len(dates))  # |f|: nothing a linear model can use
    return pl.DataFrame({"Date": dates, "Code": np.tile(np.arange(n_stocks).astype(str), n_dates), "f": f, "g": g, "target_1d": y})


def test_lightgbm_baseline_learns_what_ridge_cannot_and_repeats_itself():
    from atft_kedro.evaluation.baselines import BaselineConfig, LightGBMConfig, mean_daily_rank_ic, tuned_lightgbm, tuned_ridge

    mi = _regression_market(np.random.default_rng(0))
    days = mi["Date"].unique().sort()
    train, val, test = days[:40], days[40:50], days[50:]
    cfg = BaselineConfig(lightgbm=LightGBMConfig(max_trees=200, early_stopping=20, min_data_in_leaf=20), min_stocks=10)
    booster, info = tuned_lightgbm(mi, ["f", "g"], "target_1d", train, val, cfg)
    again, _ = tuned_lightgbm(mi, ["f", "g"], "target_1d", train, val, cfg)
    rows = mi.filter(pl.col("Date").is_in(test.implode()))
    x = rows.select("f", "g").to_numpy()
    score = booster.predict(x, num_iteration=booster.best_iteration)
    np.testing.assert_array_equal(score, again.predict(x, num_iteration=again.best_iteration))
    assert 1 <= info["trees"] <= 200 and info["val_rank_ic"] > 0.5
    assert mean_daily_rank_ic(rows["Date"].to_numpy(), score, rows["target_1d"].to_numpy(), 10) > 0.5
    coef, ridge_info = tuned_ridge(mi, ["f", "g"], "target_1d", train, val, cfg)
    assert abs(ridge_info["val_rank_ic"]) < 0.2 and ridge_info["alpha"] in cfg.ridge_alphas


def test_a_bagged_lightgbm_averages_its_seeds_fits_and_one_is_the_plain_fit():
    from dataclasses import replace

    from atft_kedro.evaluation.baselines import BaselineConfig, LightGBMConfig, bagged_lightgbm, mean_daily_rank_ic, tuned_lightgbm

    mi = _regression_market(np.random.default_rng(2))
    days = mi["Date"].unique().sort()
    train, val, test = days[:40], days[40:50], days[50:]
    cfg = BaselineConfig(lightgbm=LightGBMConfig(max_trees=200, early_stopping=20, min_data_in_leaf=20, seed=5), min_stocks=10)
    x = mi.filter(pl.col("Date").is_in(test.implode())).select("f", "g").to_numpy()
    fits = [tuned_lightgbm(mi, ["f", "g"], "target_1d", train, val, replace(cfg, lightgbm=replace(cfg.lightgbm, seed=s))) for s in (5, 6, 7)]
    each = [b.predict(x, num_iteration=b.best_iteration) for b, _ in fits]
    assert not np.array_equal(each[0], each[1])  # the seed moves the fit (bagging, feature sampling)
    one, info = bagged_lightgbm(mi, ["f", "g"], "target_1d", train, val, cfg, x)
    np.testing.assert_array_equal(one, each[0])
    assert info == fits[0][1]
    three, info = bagged_lightgbm(mi, ["f", "g"], "target_1d", train, val, replace(cfg, lightgbm=replace(cfg.lightgbm, bag=3)), x)
    np.testing.assert_allclose(three, np.mean(each, axis=0), rtol=1e-12)
    assert info["trees"] == [f[1]["trees"] for f in fits]
    v = mi.filter(pl.col("Date").is_in(val.implode()))
    vx = v.select("f", "g").to_numpy()
    together = np.mean([b.predict(vx, num_iteration=b.best_iteration) for b, _ in fits], axis=0)
    assert info["val_rank_ic"] == pytest.approx(mean_daily_rank_ic(v["Date"].to_numpy(), together, v["target_1d"].to_numpy(), 10), abs=1e-12)
    with pytest.raises(ValueError, match=r"lightgbm.bag is a whole number >= 1, got 0"):  # refused when the config is made
        replace(cfg.lightgbm, bag=0)


def test_ridge_penalty_is_chosen_on_validation():
    """Many noise features and few training rows: the smallest penalty overfits, validation picks a larger one."""
    from atft_kedro.evaluation.baselines import BaselineConfig, tuned_ridge

    rng = np.random.default_rng(1)
    n_dates, n_stocks, n_noise = 30, 40, 60
    dates = pl.Series([D0 + dt.timedelta(days=i) for i in range(n_dates)]).gather(np.repeat(np.arange(n_dates), n_stocks))
    x = rng.normal(size=(len(dates), n_noise + 1))
    cols = {f"x{i}": x[:, i] for i in range(n_noise + 1)}
    mi = pl.DataFrame({"Date": dates, **cols, "target_1d": 0.2 * x[:, 0] + rng.normal(size=len(dates))})
    days = mi["Date"].unique().sort()
    cfg = BaselineConfig(ridge_alphas=(1e-6, 300.0), min_stocks=10)
    _, info = tuned_ridge(mi, list(cols), "target_1d", days[:10], days[10:], cfg)
    assert info["alpha"] == 300.0


def test_the_tuned_ridge_fits_every_penalty_from_one_product_to_the_bits_of_one_fit_each():
    """tuned_ridge makes the design's products once for the whole grid (frame_products); each
    penalty's coefficients are the bits fit_ridge gives at it alone, and the kept one is the best
    on validation."""
    from atft_kedro.evaluation.baselines import BaselineConfig, _rows, fit_ridge, mean_daily_rank_ic, tuned_ridge

    rng = np.random.default_rng(2)
    n_dates, n_stocks = 30, 40
    dates = pl.Series([D0 + dt.timedelta(days=i) for i in range(n_dates)]).gather(np.repeat(np.arange(n_dates), n_stocks))
    x = rng.normal(size=(len(dates), 8))
    cols = {f"x{i}": x[:, i] for i in range(8)}
    mi = pl.DataFrame({"Date": dates, **cols, "target_1d": x[:, :3].sum(1) * 0.1 + rng.normal(size=len(dates))})
    days = mi["Date"].unique().sort()
    cfg = BaselineConfig(ridge_alphas=(10.0, 1e3, 1e5, 1e8), min_stocks=10)
    coef, info = tuned_ridge(mi, list(cols), "target_1d", days[:20], days[20:], cfg)
    val = _rows(mi, list(cols), "target_1d", days[20:])
    scores = {}
    for alpha in cfg.ridge_alphas:
        alone = fit_ridge(mi, list(cols), "target_1d", days[:20], alpha)
        scores[alpha] = mean_daily_rank_ic(val["Date"].to_numpy(), val.select(list(cols)).to_numpy() @ alone[:-1], val["target_1d"].to_numpy(), 10)
        if alpha == info["alpha"]:
            assert np.array_equal(coef, alone)
    assert info["alpha"] == max(scores, key=scores.get) and info["val_rank_ic"] == scores[info["alpha"]]


def test_the_baselines_rows_are_the_same_bits_at_every_call():
    """The rows a baseline fits (``_rows``: the target less its date's mean) come out the same bits
    every time; made as one lazy query, polars collects them in chunks whose date means differ in
    the last bit from call to call (seen: 30 to 294 calls of 300)."""
    from atft_kedro.evaluation.baselines import _rows

    rng = np.random.default_rng(2)
    dates = pl.Series([D0 + dt.timedelta(days=i) for i in range(30)]).gather(np.repeat(np.arange(30), 40))
    frame = pl.DataFrame({"Date": dates, **{f"x{i}": rng.normal(size=len(dates)) for i in range(8)}, "target_1d": rng.normal(size=len(dates))})
    days = frame["Date"].unique().sort()
    first = _rows(frame, [f"x{i}" for i in range(8)], "target_1d", days[:20])
    assert all(_rows(frame, [f"x{i}" for i in range(8)], "target_1d", days[:20]).equals(first) for _ in range(100))


def test_lightgbm_s_rows_filled_column_by_column_are_the_rows_of_the_frame():
    """``_row_matrix`` (LightGBM's rows, filled a column at a time) holds what ``_rows``' frame
    gives: the same rows in the same order, the same features and dtype, the same target bits,
    on a frame read in chunks with missing, infinite and NaN targets and missing features."""
    from atft_kedro.evaluation.baselines import _row_matrix, _rows

    rng = np.random.default_rng(3)
    dates = pl.Series([D0 + dt.timedelta(days=i) for i in range(30)]).gather(np.repeat(np.arange(30), 40))
    x = rng.normal(size=(len(dates), 6)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    target = rng.normal(size=len(dates))
    target[::7], target[3::11], target[5::13] = np.inf, np.nan, -np.inf
    frame = pl.DataFrame({"Date": dates, **{f"x{i}": x[:, i] for i in range(6)}, "target_5d": target, "other": np.zeros(len(dates))})
    frame = frame.with_columns(pl.when(pl.col("x0") > 1.5).then(None).otherwise(pl.col("target_5d")).alias("target_5d"))  # nulls too
    chunked = pl.concat([frame.slice(0, 500), frame.slice(500)], rechunk=False)
    names = [f"x{i}" for i in range(6)]
    for days in (frame["Date"].unique().sort()[:20], frame["Date"].unique().sort()[25:]):
        matrix, rows = _row_matrix(chunked, names, "target_5d", days)
        expected = _rows(chunked, names, "target_5d", days)
        assert matrix.dtype == expected.select(names).to_numpy().dtype == np.float32 and matrix.flags["F_CONTIGUOUS"]
        assert np.array_equal(matrix, expected.select(names).to_numpy(), equal_nan=True)
        assert rows["Date"].equals(expected["Date"]) and rows["target_5d"].equals(expected["target_5d"])
        assert 0 < rows.height < len(days) * 40 and np.isfinite(rows["target_5d"].to_numpy()).all()


def test_the_ridge_fit_is_the_same_bits_with_any_thread_count():
    """Training starts its linear paths at ``ridge_solve``'s fits, and safe mode promises the same
    bits on any machine's core count: numpy's BLAS rounds ``x.T @ x`` differently with 1 and 2
    threads (checked on 120,000 x 97), so a process with one thread and one with two must agree."""
    import hashlib
    import os
    import subprocess
    import sys

    script = (
        "import hashlib, sys, numpy as np, torch\n"
        "from atft_kedro.evaluation.baselines import ridge_solve\n"
        "torch.set_num_threads(int(sys.argv[1]))\n"
        "r = np.random.default_rng(0); x = r.standard_normal((120_000, 97)); y = r.standard_normal(120_000)\n"
        "print(hashlib.md5(ridge_solve(x, y, 10.0).tobytes()).hexdigest())\n"
    )
    digests = set()
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        run = subprocess.run([sys.executable, "-c", script, threads], capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stderr
        digests.add(run.stdout.strip())
    assert len(digests) == 1 and len(next(iter(digests))) == len(hashlib.md5().hexdigest())


def test_the_design_of_selected_rows_holds_no_hidden_copy(monkeypatch):
    """``with_intercept`` with a row selection fills the design a block of rows at a time: numpy's
    compress into a strided ``out`` first fills a hidden copy of every selected row (at the full
    size, 2 GB beside the design). Its numpy allocations peak at the design and one block, and the
    values are the selected rows, over several blocks."""
    import tracemalloc

    from atft_kedro.evaluation import baselines

    monkeypatch.setattr(baselines, "_BLOCK_ROWS", 1000)
    r = np.random.default_rng(4)
    x, rows = r.standard_normal((20000, 50)), r.random(20000) > 0.2
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        design = baselines.with_intercept(x, rows, 1.0)
        held = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(design, np.hstack([np.clip(x[rows], -1.0, 1.0), np.ones((int(rows.sum()), 1))]))
    assert held < design.nbytes + 1000 * 50 * 8 + rows.size * 8 + 2**16  # the design, one block, the kept rows' index
    assert design.nbytes > 6_000_000  # large beside that allowance: a hidden copy of the rows (another 6 MB) would fail it


def test_the_evaluation_reads_only_its_baselines_columns_of_the_features(tmp_path):
    """The catalog loads ``features`` lazily; the evaluation takes the baselines' columns alone
    (``baseline_features``): the parquet scan reads those and no other, the same values as the
    columns of the whole table, and a table without one of them is named."""
    from atft_kedro.datasets import AtomicLazyPolarsDataset
    from atft_kedro.evaluation.baselines import LIQUIDITY, baseline_features

    rng = np.random.default_rng(0)
    table = pl.DataFrame({"Date": [dt.date(2024, 1, d) for d in range(1, 11)], "Code": [f"{c}" for c in range(10)],
                          **{name: rng.normal(size=10) for name in ("ret_1d", "ret_20d", "beta_60d", LIQUIDITY, *(f"other_{i}" for i in range(40)))}})  # fmt: skip
    dataset = AtomicLazyPolarsDataset(filepath=str(tmp_path / "features.parquet"), file_format="parquet")
    dataset.save(table)
    lazy = dataset.load()
    assert isinstance(lazy, pl.LazyFrame)
    chosen = baseline_features(lazy)
    assert chosen.columns == ["Date", "Code", "ret_1d", "ret_20d", "beta_60d", LIQUIDITY]
    assert chosen.equals(table.select(chosen.columns)) and baseline_features(table).equals(chosen)
    plan = lazy.select(chosen.columns).explain()
    assert f"PROJECT {len(chosen.columns)}/{table.width} COLUMNS" in plan  # the scan reads those columns alone
    assert baseline_features(table.drop(LIQUIDITY)).columns == ["Date", "Code", "ret_1d", "ret_20d", "beta_60d"]  # liquidity where it is there
    with pytest.raises(ValueError, match="no column beta_60d, which the evaluation's baselines read"):
        baseline_features(table.drop("beta_60d").lazy())


def test_the_ridge_baseline_sums_its_products_from_the_frame_a_block_at_a_time(monkeypatch):
    """``frame_products`` (the ridge baseline's fits) sums D'D and D'y over blocks of the frame's
    rows, never holding the rows' float64 design: the products of the whole design up to rounding,
    over several blocks, the fit the same, and its numpy allocations a small part of that design."""
    import tracemalloc

    import torch

    from atft_kedro.evaluation import baselines

    monkeypatch.setattr(baselines, "_BLOCK_ROWS", 1000)
    r = np.random.default_rng(5)
    x = r.standard_normal((20000, 50)).astype(np.float32)
    names = [f"f{j}" for j in range(50)]
    frame = pl.DataFrame({**{n: x[:, j] for j, n in enumerate(names)}, "target_1d": (x[:, :3].sum(1) + r.standard_normal(20000)).astype(np.float32)})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        gram, moment = baselines.frame_products(frame, names, "target_1d")
        held = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    design = torch.from_numpy(baselines.with_intercept(x))
    np.testing.assert_allclose(gram.numpy(), (design.T @ design).numpy(), rtol=1e-10, atol=1e-8)
    np.testing.assert_allclose(moment.numpy(), (design.T @ torch.from_numpy(frame["target_1d"].to_numpy().astype(np.float64))).numpy(), rtol=1e-10, atol=1e-8)
    whole = baselines.ridge_solve(x, frame["target_1d"].to_numpy(), 3.0)
    np.testing.assert_allclose(baselines.solve_ridge_gram(gram, moment, 3.0), whole, rtol=1e-9, atol=1e-12)
    assert abs(whole[0]) > 0.5  # a fit that finds the planted slope
    assert held < design.numpy().nbytes / 4  # the whole design is 8 MB; one block of it 0.4 MB


def test_the_one_copy_design_is_the_stacked_arrays_it_replaces_and_fits_to_the_same_bits():
    """``with_intercept`` builds a fit's design in one array (the full-size market's starts fit 2.7
    million rows); its values, and so the ridge coefficients, are the bits of the stacked copies the
    fits made before: the rows kept, the winsorised features, the extra columns, the zeroed ones."""
    import warnings

    import torch

    from atft_kedro.evaluation.baselines import ridge_solve, solve_ridge_design, with_intercept
    from atft_kedro.threads import torch_threads

    r = np.random.default_rng(3)
    x, extra, y = 2.0 * r.standard_normal((5000, 12)), r.standard_normal((5000, 1)), r.standard_normal(5000)
    rows = r.random(5000) > 0.1

    def stacked_fit(design: np.ndarray, target: np.ndarray) -> np.ndarray:  # the fit as it was: an hstacked design, astype copies
        design = np.hstack([design.astype(np.float64), np.ones((len(design), 1))])
        t = torch.from_numpy(design)
        penalty = 3.0 * torch.eye(t.shape[1], dtype=torch.float64)
        penalty[-1, -1] = 0.0
        with torch_threads(1):  # as the fit runs its products (on two threads they round otherwise on some CPUs)
            return torch.linalg.solve(t.T @ t + penalty, t.T @ torch.from_numpy(target.astype(np.float64))).numpy()

    clipped = np.clip(x[rows], -1.5, 1.5)
    zeroed = np.hstack([np.zeros_like(clipped[:, :4]), clipped[:, 4:]])
    for design, before in [(with_intercept(x), x), (with_intercept(x, rows, 1.5), clipped),
                           (with_intercept(x, rows, 1.5, extra, zeroed=4), np.hstack([zeroed, extra[rows]]))]:  # fmt: skip
        np.testing.assert_array_equal(design, np.hstack([before, np.ones((len(before), 1))]))
        target = y if len(before) == len(y) else y[rows]
        assert solve_ridge_design(design, target, 3.0).tobytes() == stacked_fit(before, target).tobytes()
    assert ridge_solve(x, y, 3.0).tobytes() == stacked_fit(x, y).tobytes()
    assert with_intercept(x.astype(np.float32)).dtype == np.float64
    frozen = y.copy()
    frozen.flags.writeable = False  # as polars hands a column to numpy
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on a read-only array
        assert ridge_solve(x, frozen, 3.0).tobytes() == stacked_fit(x, y).tobytes()


def test_rank_ic_by_horizon_plot_shows_each_scorers_mean_and_the_paired_difference():
    from atft_kedro.evaluation.metrics import DailyScores, difference_summary
    from atft_kedro.evaluation.plots import plot_rank_ic_by_horizon

    rng = np.random.default_rng(0)

    def daily(mean):
        ric = mean + 0.05 * rng.standard_normal(80)
        return DailyScores(list(range(80)), ric, ric, 0, 0, 0)

    daily_by_h = {"1d": {"model": daily(0.05), "ridge": daily(0.01)}, "5d": {"model": daily(0.0), "ridge": daily(0.02)}}
    paired = {h: {"best_baseline": "ridge", **difference_summary(d["model"].rank_ic - d["ridge"].rank_ic, int(h[:-1]) - 1)}
              for h, d in daily_by_h.items()}  # fmt: skip
    fig = plot_rank_ic_by_horizon(daily_by_h, paired, ("model", "ridge"))
    left, right = fig.axes
    from matplotlib.container import BarContainer

    model_bars, ridge_bars = [c for c in left.containers if isinstance(c, BarContainer)]  # one a scorer
    for bars, name in ((model_bars, "model"), (ridge_bars, "ridge")):
        np.testing.assert_allclose([b.get_height() for b in bars], [daily_by_h[h][name].rank_ic.mean() for h in daily_by_h])
    heights = [b.get_height() for b in right.patches]
    np.testing.assert_allclose(heights, [paired[h]["mean"] for h in daily_by_h])
    assert paired["1d"]["ci95_low"] > 0 and paired["5d"]["ci95_high"] < 0  # the test's premise: one gain, one loss
    green, red = right.patches[0].get_facecolor(), right.patches[1].get_facecolor()
    assert green[1] > green[0] and red[0] > red[1]  # green where the interval is above 0, red where below
    # a horizon with no scored date (its difference null in metrics.json) is drawn empty, not an error
    unscored = {**paired, "5d": {"best_baseline": "ridge", "mean": None, "se": None, "ci95_low": None, "ci95_high": None, "dates": 0}}
    right = plot_rank_ic_by_horizon(daily_by_h, unscored, ("model", "ridge")).axes[1]
    assert np.isnan(right.patches[1].get_height()) and right.patches[0].get_height() == pytest.approx(paired["1d"]["mean"])
    assert right.get_xticklabels()[0].get_text().endswith("ridge")
    # with the validation pick beside it: two bars a horizon, the best on test first, the pick hatched
    picked = {h: {"baseline": "momentum_20d", **difference_summary(d["model"].rank_ic - d["ridge"].rank_ic - 0.01, 0)} for h, d in daily_by_h.items()}
    right = plot_rank_ic_by_horizon(daily_by_h, paired, ("model", "ridge"), picked).axes[1]
    np.testing.assert_allclose([b.get_height() for b in right.patches], [paired[h]["mean"] for h in daily_by_h] + [picked[h]["mean"] for h in daily_by_h])
    assert [bool(b.get_hatch()) for b in right.patches] == [False, False, True, True]
    assert right.get_xticklabels()[0].get_text().endswith("ridge\nmomentum_20d")


def test_the_model_is_also_paired_with_the_baseline_validation_picks():
    """20-day momentum ranks the validation dates' returns, 1-day reversal the test dates': the best
    baseline on test is reversal, the one validation picks (as the model's checkpoint is picked) is
    momentum, with its validation RankIC as measured directly, and the paired difference is taken
    against it. Each baseline's validation RankIC is in the ``baselines`` section."""
    from atft_kedro.evaluation.evaluate import EvaluationConfig, evaluate_predictions

    rng = np.random.default_rng(3)
    n_dates, n_stocks = 60, 40
    day = np.repeat(np.arange(n_dates), n_stocks)
    dates = [D0 + dt.timedelta(days=int(i)) for i in day]
    mom, rev, noise = rng.normal(size=(3, len(day)))
    y = 0.01 * (np.where(day < 45, mom, -rev) + 2.0 * rng.normal(size=len(day)))  # momentum until the test split, then reversal
    keys = {"Date": dates, "Code": np.tile([f"{i:04d}" for i in range(n_stocks)], n_dates)}
    features = pl.DataFrame({**keys, "ret_20d": mom, "ret_1d": rev, "beta_60d": np.ones(len(day))})
    model_input = pl.DataFrame({**keys, "Sector33Code": np.tile(["1", "2"], len(day) // 2), "f": noise, "target_1d": y})
    splits = pl.DataFrame({"fold": 0, "Date": sorted(set(dates)), "split": ["train"] * 30 + ["val"] * 15 + ["test"] * 15})
    test = model_input.filter(pl.col("Date") >= D0 + dt.timedelta(days=45))
    predictions = test.select("Date", "Code", (pl.col("target_1d") + 0.06 * pl.col("f")).alias("pred_1d"), "target_1d")
    result = evaluate_predictions(predictions, predictions, features, model_input, pl.DataFrame(), splits, ["f"], EvaluationConfig())
    doc = result.document
    assert doc["paired"]["1d"]["best_baseline"] == "reversal_1d"
    pick = doc["validation_pick"]["1d"]
    assert pick["baseline"] == "momentum_20d" and pick["lag"] == 0
    val = model_input.join(features, on=["Date", "Code"]).filter(pl.col("Date").is_between(D0 + dt.timedelta(days=30), D0 + dt.timedelta(days=44)))
    direct = np.mean([stats.spearmanr(g["ret_20d"], g["target_1d"])[0] for _, g in val.group_by("Date")])
    assert pick["val_rank_ic"] == pytest.approx(direct, abs=1e-6) == doc["baselines"]["momentum_20d"]["1d"]["val_rank_ic"]
    assert doc["baselines"]["reversal_1d"]["1d"]["val_rank_ic"] < pick["val_rank_ic"]
    model, momentum = doc["horizons"]["1d"]["model"]["rank_ic"], doc["horizons"]["1d"]["momentum_20d"]["rank_ic"]
    assert pick["mean"] == pytest.approx(model - momentum, abs=1e-5) and pick["ci95_low"] <= pick["mean"] <= pick["ci95_high"]
    assert pick["mean"] > doc["paired"]["1d"]["mean"]  # the bar chosen after the fact is the higher one
    report = markdown_report(doc, result.counts, {"source": "synthetic", "n_dates": 15, "start": "a", "end": "b", "n_stocks": 40, "quantile": 0.2, "cost_bp": 0})
    assert "## The model against the baseline validation picks" in report and "| 1d | momentum_20d |" in report
    chosen = doc["paired"]["1d"]["selection"]  # a model as good as every baseline, against the best of them
    assert chosen["draws"] == 1000 and chosen["q05"] < chosen["mean"] < 0 and 0 <= chosen["p"] <= 1
    assert f"{chosen['mean']:+.4f}, {chosen['q05']:+.4f} | {chosen['p']:.2f} |" in report


def test_how_alike_each_forecast_is_to_the_models():
    """A model that ranks as 1-day reversal does correlates 1 with it, about 0 with an independent
    momentum, and with the ridge as each date's Spearman correlation says, averaged; the report
    has the table."""
    from atft_kedro.evaluation.evaluate import EvaluationConfig, evaluate_predictions

    rng = np.random.default_rng(5)
    n_dates, n_stocks = 60, 40
    day = np.repeat(np.arange(n_dates), n_stocks)
    dates = [D0 + dt.timedelta(days=int(i)) for i in day]
    mom, rev, f = rng.normal(size=(3, len(day)))
    y = 0.01 * (-rev + f + 2.0 * rng.normal(size=len(day)))
    keys = {"Date": dates, "Code": np.tile([f"{i:04d}" for i in range(n_stocks)], n_dates)}
    features = pl.DataFrame({**keys, "ret_20d": mom, "ret_1d": rev, "beta_60d": np.ones(len(day))})
    model_input = pl.DataFrame({**keys, "Sector33Code": np.tile(["1", "2"], len(day) // 2), "f": f, "target_1d": y})
    splits = pl.DataFrame({"fold": 0, "Date": sorted(set(dates)), "split": ["train"] * 30 + ["val"] * 15 + ["test"] * 15})
    test = model_input.join(features, on=["Date", "Code"]).filter(pl.col("Date") >= D0 + dt.timedelta(days=45))
    predictions = test.select("Date", "Code", (-pl.col("ret_1d")).alias("pred_1d"), "target_1d")
    result = evaluate_predictions(predictions, predictions, features, model_input, pl.DataFrame(), splits, ["f"], EvaluationConfig())
    alike = result.document["forecast_correlation"]["1d"]
    assert set(alike) == {"momentum_20d", "reversal_1d", "ridge", "lightgbm"}
    assert alike["reversal_1d"] == pytest.approx(1.0) and abs(alike["momentum_20d"]) < 0.1
    frame = result.frame.filter(pl.col("target_1d").is_not_null())
    direct = np.mean([stats.spearmanr(g["pred_1d"], g["ridge_1d"])[0] for _, g in frame.group_by("Date")])
    assert alike["ridge"] == pytest.approx(direct, abs=1e-6) and abs(alike["ridge"]) < 0.5  # the ridge reads f alone
    report = markdown_report(result.document, result.counts, {"source": "synthetic", "n_dates": 15, "start": "a", "end": "b", "n_stocks": 40,
                                                              "quantile": 0.2, "cost_bp": 0})  # fmt: skip
    assert "## How alike the forecasts are" in report and f"| reversal_1d | {alike['reversal_1d']:+.2f} |" in report
    # a universe smaller than the stocks a date needs to be scored: said before anything is fitted
    from atft_kedro.evaluation.backtest import BacktestConfig

    with pytest.raises(ValueError, match=r"test dates have at most 40 stocks, fewer than evaluation.min_stocks \(50\).*evaluation.min_stocks=40"):
        evaluate_predictions(predictions, predictions, features, model_input, pl.DataFrame(), splits, ["f"], EvaluationConfig(BacktestConfig(min_stocks=50)))


def test_the_report_says_which_checkpoint_the_model_is():
    """A phase's best is epoch -1 when no epoch beat its start: the report says so in words."""
    from atft_kedro.evaluation.report import kept_checkpoint

    assert kept_checkpoint(3, 0.0412) == "best epoch 3 (validation 0.0412)"
    assert kept_checkpoint(-1, 0.0795) == "its start, which no epoch beat on validation (0.0795)"
    row = {k: 0.1 for k in METRIC_KEYS}
    doc = metrics_document({"1d": {"model": row}})
    made = {"model": {"phase": 3, "epoch": -1, "validation": 0.0795, "seed": 0, "saved_at": "t"}, "data": None}
    context = {"source": "synthetic", "n_dates": 1, "start": "a", "end": "b", "n_stocks": 2, "quantile": 0.2, "cost_bp": 0, "provenance": made}
    assert "The model: phase 3, its start, which no epoch beat on validation (0.0795), training seed 0" in markdown_report(doc, {"1d": {"model": (1, 0)}}, context)


def test_the_console_summary_lines_up_every_scorer_and_the_paired_difference():
    from atft_kedro.evaluation.report import console_summary

    rows = {h: {"model": {"rank_ic": v}, "ridge": {"rank_ic": -v / 2}, "oracle": {"rank_ic": None}} for h, v in (("1d", 0.0482), ("20d", 0.0166))}
    paired = {"1d": {"best_baseline": "ridge", "mean": 0.07245, "ci95_low": 0.0236, "ci95_high": 0.1213, "dates": 80}}
    lines = console_summary({"horizons": rows, "paired": paired}).splitlines()
    assert lines[1].split() == ["1d", "20d"] and lines[2].split() == ["model", "0.0482", "0.0166"]
    assert lines[3].split() == ["ridge", "-0.0241", "-0.0083"] and lines[4].split() == ["oracle", "n/a", "n/a"]
    assert len({len(line) for line in lines[1:5]}) == 1  # one width: the columns line up
    assert lines[-1] == "    1d  +0.0725 [+0.0236, +0.1213] against ridge, 80 dates"
    assert "minus the best" not in console_summary({"horizons": rows})
    paired["1d"]["selection"] = {"mean": -0.00512, "q05": -0.011, "p": 1.0, "draws": 1000}  # what selecting the best after the fact costs
    assert console_summary({"horizons": rows, "paired": paired}).splitlines()[-1] == (
        "    1d  +0.0725 [+0.0236, +0.1213] against ridge, 80 dates (a model as good as each baseline: -0.0051 on average)")


def test_each_ranking_is_scored_within_each_dates_liquidity_thirds():
    """A model that knows the returns of the least liquid third of each date's stocks (by the
    20-day Amihud illiquidity known that day) and nothing of the rest ranks at 1 there and about 0
    in the other thirds; each number is the mean over dates of the Spearman correlation within the
    third, and the report has the table."""
    from atft_kedro.evaluation.evaluate import LIQUIDITY_BUCKETS, EvaluationConfig, evaluate_predictions

    rng = np.random.default_rng(8)
    n_dates, n_stocks = 60, 60
    day = np.repeat(np.arange(n_dates), n_stocks)
    dates = [D0 + dt.timedelta(days=int(i)) for i in day]
    illiquid, noise, f = rng.normal(size=(3, len(day)))
    y = 0.01 * rng.normal(size=len(day))
    keys = {"Date": dates, "Code": np.tile([f"{i:04d}" for i in range(n_stocks)], n_dates)}
    features = pl.DataFrame({**keys, "ret_20d": f, "ret_1d": noise, "beta_60d": np.ones(len(day)), "amihud_20d": illiquid})
    model_input = pl.DataFrame({**keys, "Sector33Code": np.tile(["1", "2"], len(day) // 2), "f": f, "target_1d": y})
    splits = pl.DataFrame({"fold": 0, "Date": sorted(set(dates)), "split": ["train"] * 30 + ["val"] * 15 + ["test"] * 15})
    test = model_input.join(features, on=["Date", "Code"]).filter(pl.col("Date") >= D0 + dt.timedelta(days=45))
    third = ((pl.col("amihud_20d").rank("ordinal").over("Date") - 1) * 3 // pl.len().over("Date")).alias("third")
    test = test.with_columns(third)
    knows = pl.when(pl.col("third") == 2).then(100 * pl.col("target_1d")).otherwise(pl.col("ret_1d"))  # both on one scale
    predictions = test.select("Date", "Code", knows.alias("pred_1d"), "target_1d")
    result = evaluate_predictions(predictions, predictions, features, model_input, pl.DataFrame(), splits, ["f"], EvaluationConfig(BacktestConfig(min_stocks=10)))
    liquid = result.document["by_liquidity"]
    assert liquid["feature"] == "amihud_20d" and liquid["buckets"] == LIQUIDITY_BUCKETS == ["most liquid", "middle", "least liquid"]
    model = liquid["rank_ic"]["1d"]["model"]
    assert model[2] == pytest.approx(1.0) and abs(model[0]) < 0.15 and abs(model[1]) < 0.15
    assert set(liquid["rank_ic"]["1d"]) == {"model", "momentum_20d", "reversal_1d", "ridge", "lightgbm"}
    for b in range(3):  # each third's number, the slow way
        rows = test.join(predictions.select("Date", "Code", "pred_1d"), on=["Date", "Code"]).filter(pl.col("third") == b)
        direct = np.mean([stats.spearmanr(g["pred_1d"], g["target_1d"])[0] for _, g in rows.group_by("Date")])
        assert model[b] == pytest.approx(direct, abs=1e-9)
    report = markdown_report(result.document, result.counts, {"source": "synthetic", "n_dates": 15, "start": "a", "end": "b", "n_stocks": 60,
                                                              "quantile": 0.2, "cost_bp": 0})  # fmt: skip
    assert "## Where the ranking holds: by liquidity" in report and f"| 1d | model | {model[0]:.4f} | {model[1]:.4f} | {model[2]:.4f} |" in report
    # the long-short book on the two more liquid thirds alone: what it knows is gone from it
    without = liquid["ls_sharpe_without_least_liquid"]["1d"]["model"]
    everything = result.document["horizons"]["1d"]["model"]["ls_sharpe"]
    assert everything > 5 and without < everything - 5
    liquid_rows = result.frame.join(test.select("Date", "Code", "third"), on=["Date", "Code"]).filter(pl.col("third") < 2)
    slow = long_short_backtest(liquid_rows, "pred_1d", "target_1d", 1, BacktestConfig(min_stocks=10)).summary()["ls_sharpe"]
    assert without == pytest.approx(slow, abs=1e-6)  # metrics.json keeps six decimals
