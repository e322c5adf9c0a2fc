import math
import re

import numpy as np
import polars as pl
import pytest

from atft_kedro.features.builders import build_features, stock_feature_groups
from atft_kedro.features.normalise import robust_zscore_by_date, standardise_with_train_stats
from atft_kedro.features.panel import build_panel
from atft_kedro.features.splits import SplitConfig, make_splits
from atft_kedro.features.targets import build_targets, neutralise_targets


@pytest.fixture(scope="module")
def built(tiny_market):
    panel = build_panel(tiny_market.daily_quotes, tiny_market.listed_info)
    features, market, manifest = build_features(panel, tiny_market.topix)
    return panel, features, market, manifest


def test_manifest_names_and_groups_every_column(built):
    _, features, market, manifest = built
    stock = [m["name"] for m in manifest if not m["date_constant"]]
    dated = [m["name"] for m in manifest if m["date_constant"]]
    assert len(stock) + len(dated) >= 80
    assert features.columns == ["Date", "Code", *stock]
    assert market.columns == ["Date", *dated]
    assert len({m["name"] for m in manifest}) == len(manifest)
    groups = {m["group"] for m in manifest}
    assert {"returns", "volatility", "moving_average", "oscillator", "liquidity", "range",
            "market_relative", "sector", "cross_section_rank", "market"} <= groups  # fmt: skip
    assert stock_feature_groups() == {m["group"] for m in manifest if not m["date_constant"]}  # what the parameter check names
    assert all(m["description"] for m in manifest)


def test_panel_fills_missing_days_without_inventing_trades(tiny_market, built):
    panel = built[0]
    assert panel.height > tiny_market.daily_quotes.height  # the tiny market has missing days
    filled = panel.filter(~pl.col("traded"))
    assert filled.height == panel.height - tiny_market.daily_quotes.height
    assert (filled["volume"] == 0).all()
    one = filled.row(0, named=True)
    prev = panel.filter((pl.col("Code") == one["Code"]) & (pl.col("Date") < one["Date"])).tail(1)
    assert one["close"] == prev["close"][0]  # carried forward, not made up


def _one_stock(panel: pl.DataFrame, features: pl.DataFrame, code: str):
    p = panel.filter(pl.col("Code") == code).sort("Date")
    f = features.filter(pl.col("Code") == code).sort("Date")
    return p["close"].to_numpy(), f


def test_features_equal_hand_computed_values(built):
    panel, features, _, _ = built
    code = panel.filter(pl.col("traded")).group_by("Code").len().sort("len")["Code"][-1]
    close, f = _one_stock(panel, features, code)
    t = 150
    # a return
    assert f["ret_5d"][t] == pytest.approx(close[t] / close[t - 5] - 1, rel=1e-5)
    assert f["ret_5d"][4] is None  # not computable yet: null, not zero
    # a volatility: sample std of the last 20 daily log returns, annualised
    lr = [math.log(close[i] / close[i - 1]) for i in range(t - 19, t + 1)]
    mean = sum(lr) / 20
    vol = math.sqrt(sum((x - mean) ** 2 for x in lr) / 19) * math.sqrt(252)
    assert f["vol_20d"][t] == pytest.approx(vol, rel=1e-4)
    # RSI(14), Wilder: averages y = y + (x - y) / 14 started at the first change
    gain = loss = None
    for i in range(1, t + 1):
        d = close[i] - close[i - 1]
        g, l_ = max(d, 0.0), max(-d, 0.0)
        gain = g if gain is None else gain + (g - gain) / 14
        loss = l_ if loss is None else loss + (l_ - loss) / 14
    assert f["rsi_14"][t] == pytest.approx(100 - 100 / (1 + gain / loss), rel=1e-4)


def test_no_feature_of_day_t_sees_prices_after_t(tiny_market, built):
    panel, features, market, _ = built
    dates = panel["Date"].unique().sort()
    cut = dates[len(dates) // 2]
    rng = np.random.default_rng(0)
    later = pl.col("Date") > cut
    noise = pl.Series(rng.lognormal(0.0, 0.2, panel.height))
    bumped = panel.with_columns(
        [pl.when(later).then(pl.col(c) * noise).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close", "volume", "turnover")]
    ).with_columns(pl.max_horizontal("open", "high", "close").alias("high"), pl.min_horizontal("open", "low", "close").alias("low"))
    topix = tiny_market.topix.with_columns(
        [pl.when(later).then(pl.col(c) * 1.3).otherwise(pl.col(c)).alias(c) for c in ("Open", "High", "Low", "Close")]
    )
    f2, m2, _ = build_features(bumped, topix)
    past, past2 = features.filter(~later), f2.filter(~later)
    cols = features.columns[2:]
    np.testing.assert_allclose(past2.select(cols).to_numpy(), past.select(cols).to_numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m2.filter(~later).select(market.columns[1:]).to_numpy(),
                               market.filter(~later).select(market.columns[1:]).to_numpy(), rtol=1e-5, atol=1e-6)  # fmt: skip
    # the perturbation is real: later features and earlier targets do change
    assert not np.allclose(f2.filter(later)["ret_1d"].to_numpy(), features.filter(later)["ret_1d"].to_numpy(), equal_nan=True)
    t1, t2 = build_targets(panel), build_targets(bumped)
    day_before = t1.filter(pl.col("Date") == cut)["target_5d"].to_numpy()
    assert not np.allclose(day_before, t2.filter(pl.col("Date") == cut)["target_5d"].to_numpy(), equal_nan=True)


def test_a_split_after_day_t_changes_no_feature_of_day_t(tiny_market, built):
    """A data source's adjusted history is rescaled back from each split (J-Quants' Adjustment*
    columns as of the download): a stock that splits after t has other adjusted prices and volumes
    on t than if it had not. No feature of t may tell them apart: a future split would leak."""
    _, features, _, _ = built
    quotes = tiny_market.daily_quotes
    dates = quotes["Date"].unique().sort()
    cut, split_day = dates[len(dates) // 2], dates[3 * len(dates) // 4]
    stocks = quotes.filter(pl.col("Date") == dates[0])["Code"].sort()[:5]  # each splits 1:4 on split_day
    splitter = pl.col("Code").is_in(stocks.implode())
    after = splitter & (pl.col("Date") >= split_day)
    # adjusted to the shares after the split: a quarter of the price and 4 times the volume, every day
    adjusted = [pl.when(splitter).then(pl.col(c) / 4).otherwise(pl.col(c)).alias(c) for c in
                ("AdjustmentOpen", "AdjustmentHigh", "AdjustmentLow", "AdjustmentClose")]  # fmt: skip
    raw = [pl.when(after).then(pl.col(c) / 4).otherwise(pl.col(c)).alias(c) for c in ("Open", "High", "Low", "Close")]
    split = quotes.with_columns(
        *adjusted, *raw,
        pl.when(splitter).then(pl.col("AdjustmentVolume") * 4).otherwise(pl.col("AdjustmentVolume")).alias("AdjustmentVolume"),
        pl.when(after).then(pl.col("Volume") * 4).otherwise(pl.col("Volume")).alias("Volume"),
        pl.when(pl.col("Code").is_in(stocks.implode()) & (pl.col("Date") == split_day)).then(0.25)
        .otherwise(pl.col("AdjustmentFactor")).alias("AdjustmentFactor"),
    )  # fmt: skip
    f2, _, _ = build_features(build_panel(split, tiny_market.listed_info), tiny_market.topix)
    known = pl.col("Date") <= cut
    cols = features.columns[2:]
    a, b = features.filter(known).sort("Code", "Date"), f2.filter(known).sort("Code", "Date")
    differ = [c for c in cols if not np.allclose(a[c].to_numpy(), b[c].to_numpy(), rtol=1e-5, atol=1e-6, equal_nan=True)]
    assert differ == [], differ
    # and once it has happened a split is a change of units: the same features after it too
    a, b = features.sort("Code", "Date"), f2.sort("Code", "Date")
    assert [c for c in cols if not np.allclose(a[c].to_numpy(), b[c].to_numpy(), rtol=1e-5, atol=1e-6, equal_nan=True)] == []


def test_targets_look_exactly_h_trading_days_ahead(built):
    panel = built[0]
    targets = build_targets(panel)
    code = panel["Code"][0]
    p = panel.filter(pl.col("Code") == code)
    t = targets.filter(pl.col("Code") == code)
    close, traded = p["close"].to_numpy(), p["traded"].to_numpy()
    for h in (1, 5, 10, 20):
        got = t[f"target_{h}d"].to_numpy()
        for i in (30, 60, len(close) - h - 1, len(close) - h):
            ok = i + h < len(close) and traded[i] and traded[i + h]
            expected = close[i + h] / close[i] - 1 if ok else np.nan
            np.testing.assert_allclose(got[i], expected, rtol=1e-12, equal_nan=True)
    assert targets.filter(pl.col("Date") == panel["Date"].max())["target_1d"].null_count() == targets.filter(
        pl.col("Date") == panel["Date"].max()
    ).height


def test_robust_zscore_uses_only_its_own_date(built):
    _, features, _, manifest = built
    cols = ["ret_5d", "vol_20d"]
    z = robust_zscore_by_date(features, cols)
    day = features["Date"].unique().sort()[100]
    other = features.with_columns([pl.when(pl.col("Date") != day).then(pl.col(c) * 7 + 3).otherwise(pl.col(c)).alias(c) for c in cols])
    z2 = robust_zscore_by_date(other, cols)
    assert z.filter(pl.col("Date") == day).equals(z2.filter(pl.col("Date") == day))
    x = z.filter(pl.col("Date") == day)["ret_5d"].to_numpy()
    assert abs(np.median(x)) < 1e-6 and np.abs(x).max() <= 5.0
    assert z[cols].null_count().sum_horizontal().item() == 0


def test_rows_left_out_of_a_dates_statistics_are_scored_with_the_others():
    """``counted``: the stocks that traded make each date's median, MAD and ranks; a suspended
    stock's row is scored against them (z-score) or set to the median (ranks), and moves neither."""
    from atft_kedro.features.normalise import rank_gauss_by_date

    frame = pl.DataFrame({"Date": [1, 1, 1, 1, 2, 2], "a": [1.0, 2.0, 3.0, 100.0, 5.0, 6.0]})
    counted = pl.Series([True, True, True, False, True, True])
    z = robust_zscore_by_date(frame, ["a"], counted=counted)["a"].to_numpy()
    np.testing.assert_allclose(z, [-1 / 1.4826, 0.0, 1 / 1.4826, 5.0, -0.5 / (1.4826 * 0.5), 0.5 / (1.4826 * 0.5)], atol=1e-5)
    everyone = robust_zscore_by_date(frame, ["a"])["a"].to_numpy()
    assert not np.allclose(everyone[:3], z[:3])  # counted, the 100 would move the others' median and MAD
    r = rank_gauss_by_date(frame, ["a"], counted=counted)["a"].to_numpy()
    np.testing.assert_allclose(r[:4], [-0.9674216, 0.0, 0.9674216, 0.0], atol=1e-6)  # three ranked; the fourth at the median


def test_rank_groups_read_as_per_date_normal_scores_of_ranks_from_their_own_date_alone(built):
    from scipy.stats import norm, rankdata

    from atft_kedro.features.normalise import stock_features_by_date

    _, features, _, manifest = built
    ranged = [m["name"] for m in manifest if m["group"] == "range"]
    z = robust_zscore_by_date(features, [m["name"] for m in manifest if not m["date_constant"]])
    r = stock_features_by_date(features, manifest, rank_groups=["range"])
    rest = [m["name"] for m in manifest if not m["date_constant"] and m["group"] != "range"]
    assert r.select(rest).equals(z.select(rest)) and not r.select(ranged).equals(z.select(ranged))
    day = features["Date"].unique().sort()[100]
    raw = features.filter(pl.col("Date") == day)["upper_shadow"].to_numpy()
    kept = ~np.isnan(raw)
    expected = np.zeros(len(raw))
    expected[kept] = norm.ppf((rankdata(raw[kept]) - 0.5) / kept.sum())  # ties at their mean rank, missing at 0
    np.testing.assert_allclose(r.filter(pl.col("Date") == day)["upper_shadow"].to_numpy(), expected, atol=1e-5)
    # the other dates' values change nothing of this date's (no future, no past)
    other = features.with_columns(pl.when(pl.col("Date") != day).then(-pl.col(c) * 3).otherwise(pl.col(c)).alias(c) for c in ranged)
    moved = stock_features_by_date(other, manifest, rank_groups=["range"])
    assert moved.filter(pl.col("Date") == day).equals(r.filter(pl.col("Date") == day))
    with pytest.raises(ValueError, match="not stock feature groups"):
        stock_features_by_date(features, manifest, rank_groups=["candles"])
    with pytest.raises(ValueError, match="not stock feature groups"):  # date-constant: nothing to rank among a date's stocks
        stock_features_by_date(features, manifest, rank_groups=["market"])


def test_market_context_scaling_is_fitted_on_training_dates_only(built):
    market = built[2]
    cols = ["mkt_ret_1d", "mkt_vol_20d"]
    train = market["Date"][:120]
    a, stats = standardise_with_train_stats(market, cols, train)
    changed = market.with_columns([pl.when(pl.col("Date").is_in(train.implode())).then(pl.col(c)).otherwise(pl.col(c) * 100) for c in cols])
    b, stats_b = standardise_with_train_stats(changed, cols, train)
    assert stats == stats_b
    assert a.head(120).equals(b.head(120))


@pytest.mark.parametrize(("kw", "said"), [({"purge_days": 5}, r"purge_days must be at least the longest target horizon, 20 trading days, got 5"),
                                       ({"n_folds": 0}, r"n_folds is a whole number >= 1, got 0"),
                                       ({"embargo_days": -1}, r"embargo_days is a whole number of trading days >= 0, got -1"),
                                       ({"val_fraction": 0.6, "test_fraction": 0.5}, r"together < 1, got 0.6 and 0.5")])  # fmt: skip
def test_splits_that_would_leak_or_leave_nothing_are_refused(kw, said):
    with pytest.raises(ValueError, match=said):
        SplitConfig(**kw)


@pytest.mark.parametrize("n_folds", [1, 3])
def test_splits_respect_purge_and_embargo(n_folds):
    dates = pl.date_range(pl.date(2015, 1, 1), pl.date(2020, 1, 1), "1d", eager=True)[:1200]
    cfg = SplitConfig(warmup_days=60, purge_days=20, embargo_days=20, n_folds=n_folds)
    splits = make_splits(dates, cfg)
    index = {d: i for i, d in enumerate(dates.to_list())}
    for fold in range(n_folds):
        s = splits.filter(pl.col("fold") == fold)
        blocks = {name: sorted(index[d] for d in s.filter(pl.col("split") == name)["Date"].to_list()) for name in ("train", "val", "test")}
        assert blocks["train"][0] == 60
        for a, b in (("train", "val"), ("val", "test")):
            assert blocks[b][0] - blocks[a][-1] - 1 >= cfg.purge_days + cfg.embargo_days
            assert blocks[a][-1] + 20 < blocks[b][0]  # the longest label of a block ends before the next begins
        for name, idx in blocks.items():
            assert idx == list(range(idx[0], idx[-1] + 1)), name  # contiguous
    if n_folds > 1:
        tests = [splits.filter((pl.col("fold") == f) & (pl.col("split") == "test"))["Date"] for f in range(n_folds)]
        assert all(tests[f].max() < tests[f + 1].min() for f in range(n_folds - 1))
        assert tests[-1].max() == dates[-1]


@pytest.mark.parametrize("cfg", [SplitConfig(), SplitConfig(n_folds=3, test_fraction=0.3)])
def test_too_short_history_is_a_clear_error_that_says_how_many_dates_are_needed(cfg):
    dates = pl.date_range(pl.date(2020, 1, 1), pl.date(2024, 1, 1), "1d", eager=True)
    with pytest.raises(ValueError, match=r"too few dates for the splits: 153 dates leave \d+ training dates in fold 0 \(at least 80") as error:
        make_splits(dates[:153], cfg)
    needed = int(re.search(r"these splits need at least (\d+) dates", str(error.value)).group(1))
    assert str(error.value).endswith("or fewer folds") == (cfg.n_folds > 1)
    assert make_splits(dates[:needed], cfg)["fold"].n_unique() == cfg.n_folds  # the number said is the least that works
    with pytest.raises(ValueError, match=f"{needed - 1} dates leave"):
        make_splits(dates[: needed - 1], cfg)


def test_robust_zscore_equals_the_polars_expression():
    from atft_kedro.features.normalise import robust_zscore_expr

    rng = np.random.default_rng(3)
    dates = np.repeat(np.arange(30), 50)
    frame = pl.DataFrame({"Date": dates, "Code": np.tile(np.arange(50), 30), "a": rng.standard_t(3, 1500), "b": rng.normal(size=1500)})
    frame = frame.filter(~((pl.col("Date") == 4) & (pl.col("Code") > 10)))  # a short cross-section
    frame = frame.with_columns(
        a=pl.when(pl.col("Code") % 7 == 0).then(None).otherwise(pl.col("a")),  # nulls
        b=pl.when(pl.col("Date") == 5).then(1.0).when(pl.col("Date") == 6).then(None).otherwise(pl.col("b").round(1)),  # constant, empty, ties
    ).sample(fraction=1.0, shuffle=True, seed=0)
    got = robust_zscore_by_date(frame, ["a", "b"])
    expected = frame.with_columns(robust_zscore_expr("a"), robust_zscore_expr("b"))
    assert got.select("Date", "Code").equals(expected.select("Date", "Code"))
    np.testing.assert_allclose(got["a"].to_numpy(), expected["a"].to_numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["b"].to_numpy(), expected["b"].to_numpy(), rtol=1e-6, atol=1e-6)
    assert got["b"].filter(got["Date"] == 6).eq(0).all() and got["b"].filter(got["Date"] == 5).eq(0).all()


def test_neutralised_targets_hold_no_sector_or_beta_and_keep_the_rest():
    """Per date the neutralised target has zero mean in every sector and no covariance with beta;
    a target with no sector or beta in it comes back unchanged; unknown targets stay unknown."""
    rng = np.random.default_rng(1)
    rows = []
    for day in range(3):
        sector = rng.integers(0, 4, 60).astype(str)
        beta, own = rng.uniform(0.5, 1.5, 60), rng.normal(0, 0.01, 60)
        own = pl.DataFrame({"s": sector, "o": own}).select(pl.col("o") - pl.col("o").mean().over("s"))["o"].to_numpy()
        b_in = beta - pl.DataFrame({"s": sector, "b": beta}).select(pl.col("b").mean().over("s"))["b"].to_numpy()
        own = own - (own @ b_in) / (b_in @ b_in) * b_in  # within-sector mean 0 and orthogonal to beta
        target = own + 0.02 * beta + np.array([0.01, -0.02, 0.0, 0.03])[sector.astype(int)]
        rows += [(day, f"{i}", sector[i], beta[i], target[i], own[i]) for i in range(60)]
    frame = pl.DataFrame(rows, schema=["Date", "Code", "Sector33Code", "beta_60d", "target_1d", "own"], orient="row")
    frame = frame.with_columns(pl.when(pl.col("Code") == "0").then(None).otherwise(pl.col("target_1d")).alias("target_1d"))
    out = neutralise_targets(frame, horizons=(1,))
    assert out.drop("target_1d").equals(frame.drop("target_1d"))  # the labels only
    assert out.filter(pl.col("Code") == "0")["target_1d"].null_count() == 3
    known = out.filter(pl.col("Code") != "0")
    sector_means = known.group_by("Date", "Sector33Code").agg(pl.col("target_1d").mean())["target_1d"]
    np.testing.assert_allclose(sector_means.to_numpy(), 0.0, atol=1e-12)
    beta_cov = known.group_by("Date").agg(
        (pl.col("target_1d") * (pl.col("beta_60d") - pl.col("beta_60d").mean().over("Sector33Code"))).sum()
    )["target_1d"]
    np.testing.assert_allclose(beta_cov.to_numpy(), 0.0, atol=1e-12)
    # the stock-specific part survives (not exactly: stock "0" sits out of the fit)
    assert np.corrcoef(known["target_1d"].to_numpy(), known["own"].to_numpy())[0, 1] > 0.99


def test_whether_a_suspended_stock_trades_again_changes_nothing_of_day_t(tiny_market, built):
    """A stock suspended from just before t: in one history it trades again a few days after t, in
    the other never (delisted while suspended). On day t the two cannot be told apart, so nothing
    of t may differ: no other stock's features or per-date z-scores, no market feature, no graph.
    (The panel has a row without a trade only where the stock trades again later: each date's
    cross-section is the stocks that traded that day.)"""
    from atft_kedro.graph.correlation import GraphConfig, build_graphs
    from atft_kedro.pipelines.data_engineering.nodes import build_model_input

    _, _, _, manifest = built
    quotes = tiny_market.daily_quotes
    dates = quotes["Date"].unique().sort()
    cut = dates[len(dates) // 2]
    stops, resumes = dates[len(dates) // 2 - 2], dates[len(dates) // 2 + 4]
    code = quotes.filter(pl.col("Date") == dates[-1])["Code"].sort()[0]  # listed to the end
    this = pl.col("Code") == code
    known = pl.col("Date") <= cut
    names = [m["name"] for m in manifest if not m["date_constant"]]
    seen = []
    for q in (quotes.filter(~(this & (pl.col("Date") >= stops) & (pl.col("Date") < resumes))), quotes.filter(~(this & (pl.col("Date") >= stops)))):
        panel = build_panel(q, tiny_market.listed_info)
        features, market, _ = build_features(panel, tiny_market.topix)
        model_input = build_model_input(features, build_targets(panel), panel, manifest, {"clip": 5.0})
        graphs = build_graphs(panel, GraphConfig(k=6, window=40, min_periods=25), dates=dates.filter((dates >= stops) & (dates <= cut)), progress=False)
        rows = zip(graphs.offsets[:-1], graphs.offsets[1:])
        edges = {(d, c, tuple(sorted(graphs.codes[lo:hi][n] for n in nbrs if n >= 0)))
                 for d, (lo, hi) in zip(graphs.dates, rows) for c, nbrs in zip(graphs.codes[lo:hi], graphs.neighbors[lo:hi])}  # fmt: skip
        seen.append((model_input.filter(known & ~this).sort("Code", "Date"), market.filter(known), edges))
    (a, ma, ea), (b, mb, eb) = seen
    assert a.height == b.height > 0 and len(ea) > 0
    differ = [c for c in names if not np.allclose(a[c].to_numpy(), b[c].to_numpy(), rtol=1e-5, atol=1e-6, equal_nan=True)]
    differ += [c for c in ma.columns[1:] if not np.allclose(ma[c].to_numpy(), mb[c].to_numpy(), rtol=1e-5, atol=1e-6, equal_nan=True)]
    assert differ == [], differ
    assert ea == eb
    assert not any(c == code or code in n for _, c, n in ea)  # suspended on each of these dates: neither a node nor a neighbour


def test_model_input_is_the_same_whatever_the_rows_order_and_refuses_a_repeated_or_unknown_row(built):
    """build_model_input joins only the keys and reorders only when it must: the model input comes
    out in (Code, Date) order, one row a stock and date, with each row's own targets, whatever order
    the features and targets arrive in; a (Date, Code) given twice, or a feature row the panel
    lacks, is an error that says so."""
    from atft_kedro.pipelines.data_engineering.nodes import build_model_input

    panel, features, _, manifest = built
    tg = build_targets(panel)
    params = {"clip": 5.0}
    model_input = build_model_input(features, tg, panel, manifest, params)
    assert model_input.height == features.height
    assert model_input.select("Code", "Date").equals(features.sort("Code", "Date").select("Code", "Date"))
    expected = features.join(tg, on=["Date", "Code"]).sort("Code", "Date")["target_5d"]
    assert model_input["target_5d"].equals(expected, null_equal=True)  # each row's own target, not a neighbour's
    shuffled = build_model_input(features.sample(fraction=1.0, shuffle=True, seed=3), tg.sample(fraction=1.0, shuffle=True, seed=4), panel, manifest, params)
    assert shuffled.equals(model_input, null_equal=True)
    with pytest.raises(ValueError, match="more than once"):
        build_model_input(features, pl.concat([tg, tg.head(1)]), panel, manifest, params)
    with pytest.raises(ValueError, match="have no panel row"):
        build_model_input(features, tg, panel.slice(1), manifest, params)
