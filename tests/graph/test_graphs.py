import numpy as np
import polars as pl
import pytest
import torch

from atft_kedro.datasets import GraphStoreDataset
from atft_kedro.features.panel import build_panel
from atft_kedro.graph.correlation import EDGE_ATTRIBUTES, GraphConfig, build_graphs, correlation_matrix, long_lead_correlations
from atft_kedro.graph.reference import build_graph_reference


@pytest.fixture(scope="module")
def panel(tiny_market):
    return build_panel(tiny_market.daily_quotes, tiny_market.listed_info)


CONFIGS = {
    "pearson": GraphConfig(k=6, window=40, min_periods=25),
    "ewm_shrunk_lag1": GraphConfig(k=6, window=40, min_periods=25, method="ewm_shrunk", lag=1, threshold=0.1),
    "relative": GraphConfig(k=6, window=40, min_periods=25, returns="relative", lead_halflife=10.0),
    "lead_lag_ewm": GraphConfig(k=6, window=40, min_periods=25, lead_lag=True, method="ewm_shrunk", returns="relative"),
    "sector_relative_blend": GraphConfig(k=6, window=40, min_periods=25, returns="sector_relative", blend_window=80),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_equals_the_plain_per_date_reference(panel, name):
    cfg = CONFIGS[name]
    dates = panel["Date"].unique().sort().to_numpy()
    picked = dates[[0, 30, 41, 150, len(dates) - 1]]
    graphs = build_graphs(panel, cfg, dates=picked, progress=False)
    for d in picked:
        codes, neighbors, edge_attr = build_graph_reference(panel, d, cfg)
        g = graphs.graph(d)
        np.testing.assert_array_equal(g.codes, codes)
        np.testing.assert_array_equal(g.neighbors.numpy(), neighbors)
        np.testing.assert_allclose(g.edge_attr.numpy(), edge_attr, atol=1e-6)


def test_pearson_equals_pandas_corr_on_complete_windows(panel):
    pivot = panel.filter(pl.col("Date") <= panel["Date"].unique().sort()[80]).pivot(on="Code", index="Date", values="close").sort("Date")
    returns = pivot.drop("Date").to_pandas().pct_change().iloc[-40:]
    complete = returns.columns[returns.notna().all()]
    rho, ok = correlation_matrix(returns[complete].to_numpy(), np.ones(40), 40)
    expected = returns[complete].corr().to_numpy().copy()
    np.fill_diagonal(expected, 0.0)
    assert ok.all()
    np.testing.assert_allclose(rho.numpy(), expected, atol=1e-10)


@pytest.mark.parametrize(
    "returns, lead_lag, blend, rebuild",
    [("raw", False, None, 1), ("relative", False, None, 1), ("relative", True, None, 1), ("sector_relative", False, 80, 1), ("relative", False, None, 3)],
)
def test_no_graph_of_day_t_sees_returns_after_t(panel, returns, lead_lag, blend, rebuild):
    """Prices and traded values after t move: no neighbour and no edge attribute of a graph up to t
    changes (a graph carried over from an earlier date too: ``rebuild_every``)."""
    cfg = GraphConfig(k=6, window=40, min_periods=25, returns=returns, lead_lag=lead_lag, blend_window=blend, rebuild_every=rebuild)
    dates = panel["Date"].unique().sort()
    cut = dates[200]
    rng = np.random.default_rng(1)
    later = pl.col("Date") > cut
    bumped = panel.with_columns(
        pl.when(later).then(pl.col("close") * pl.Series(rng.lognormal(0, 0.3, panel.height))).otherwise(pl.col("close")),
        pl.when(later).then(pl.col("turnover") * pl.Series(rng.lognormal(0, 1.0, panel.height))).otherwise(pl.col("turnover")),
    )
    a = build_graphs(panel, cfg, progress=False)
    b = build_graphs(bumped, cfg, progress=False)
    upto = int(a.offsets[a.index_of(cut) + 1])
    np.testing.assert_array_equal(a.neighbors[:upto], b.neighbors[:upto])
    np.testing.assert_array_equal(a.edge_attr[:upto], b.edge_attr[:upto])
    assert not np.array_equal(a.neighbors[upto:], b.neighbors[upto:])  # later graphs do change
    # lag=1: the graph of t does not even use the return of t
    lagged = GraphConfig(k=6, window=40, min_periods=25, lag=1, returns=returns, lead_lag=lead_lag, blend_window=blend)
    day_t = pl.col("Date") == cut
    c = build_graphs(panel, lagged, dates=[cut], progress=False)
    shocked = panel.with_columns(pl.when(day_t).then(pl.col("close") * 1.5).otherwise(pl.col("close")),
                                 pl.when(day_t).then(pl.col("turnover") * 9).otherwise(pl.col("turnover")))  # fmt: skip
    d = build_graphs(shocked, lagged, dates=[cut], progress=False)
    np.testing.assert_array_equal(c.neighbors, d.neighbors)
    np.testing.assert_array_equal(c.edge_attr, d.edge_attr)


def test_degree_padding_self_exclusion_and_attribute_order(panel):
    cfg = GraphConfig(k=8, window=40, min_periods=25)
    graphs = build_graphs(panel, cfg, progress=False)
    day = panel.filter((pl.col("Date") == graphs.dates[200]) & pl.col("traded")).sort("Code")  # the nodes: the stocks that traded that day
    g = graphs.graph(graphs.dates[200])
    n = day.height
    nb, attr = g.neighbors.numpy(), g.edge_attr.numpy()
    assert nb.shape == (n, 8) and attr.shape == (n, 8, len(EDGE_ATTRIBUTES))
    assert graphs.config["edge_attributes"] == list(EDGE_ATTRIBUTES)
    valid = nb >= 0
    assert not (nb == np.arange(n)[:, None]).any()  # no self loops
    assert all(len(set(row[row >= 0])) == (row >= 0).sum() for row in nb)  # no duplicates
    assert (np.diff(valid.astype(int), axis=1) <= 0).all()  # valid slots first, padding after
    assert np.all(np.abs(attr[..., 0])[:, :-1] + 1e-7 >= np.abs(attr[..., 0])[:, 1:])  # strongest first
    assert np.all(attr[~valid] == 0)
    assert np.all(np.abs(attr[..., 0][valid]) >= cfg.threshold)
    sector, market = day["Sector33Code"].to_numpy(), day["MarketCode"].to_numpy()
    j = np.where(valid, nb, 0)
    np.testing.assert_array_equal(attr[..., 1][valid], (sector[j] == sector[:, None])[valid])
    np.testing.assert_array_equal(attr[..., 2][valid], (market[j] == market[:, None])[valid])
    assert (valid.sum(1) == 8).mean() > 0.9
    # one edge by hand: the traded-value and volatility ratios and both lag correlations over the window
    i, slot = 5, 0
    window = panel.filter(pl.col("Date").is_in(pl.Series(graphs.dates[161:201]).implode()))
    a, b = day["Code"][i], day["Code"][int(nb[i, slot])]
    ret = (panel.sort("Date").with_columns(r=(pl.col("close") / pl.col("close").shift(1) - 1).over("Code"))
           .filter(pl.col("Date").is_in(pl.Series(graphs.dates[160:201]).implode()))
           .pivot(on="Code", index="Date", values="r").sort("Date"))  # fmt: skip
    value = window.group_by("Code").agg(pl.col("turnover").filter(pl.col("traded")).mean().log1p().alias("v"))
    v = dict(value.iter_rows())
    ra, rb = ret[a].to_numpy(), ret[b].to_numpy()  # 41 days: the window and the day before it
    assert attr[i, slot, 3] == pytest.approx(v[b] - v[a], abs=1e-5)
    assert attr[i, slot, 4] == pytest.approx(np.log(np.nanstd(rb[1:]) / np.nanstd(ra[1:])), abs=1e-5)
    assert attr[i, slot, 5] == pytest.approx(np.corrcoef(ra[1:], rb[:-1])[0, 1], abs=0.05)  # b a day before a
    assert attr[i, slot, 6] == pytest.approx(np.corrcoef(ra[:-1], rb[1:])[0, 1], abs=0.05)


def test_new_listings_get_no_made_up_neighbours(panel):
    cfg = GraphConfig(k=6, window=40, min_periods=25)
    firsts = panel.group_by("Code").agg(pl.col("Date").min()).sort("Date")
    late_code, listed = firsts.row(-1)
    assert listed > panel["Date"].min()
    dates = panel["Date"].unique().sort()
    i = dates.search_sorted(listed)
    graphs = build_graphs(panel, cfg, dates=dates[i : i + 40], progress=False)
    for d in dates[i : i + cfg.min_periods]:  # day i + m has m returns: fewer than min_periods
        g = graphs.graph(d)
        row = int(np.flatnonzero(g.codes == late_code)[0])
        assert (g.neighbors[row] == -1).all()
        assert not (g.neighbors == row).any()
    g = graphs.graph(dates[i + 30])
    assert (g.neighbors[int(np.flatnonzero(g.codes == late_code)[0])] >= 0).any()


def test_delisted_stocks_leave_the_graph(panel):
    lasts = panel.group_by("Code").agg(pl.col("Date").max()).sort("Date")
    gone_code, gone = lasts.row(0)
    assert gone < panel["Date"].max()
    graphs = build_graphs(panel, GraphConfig(k=6, window=40, min_periods=25), progress=False)
    after = graphs.dates[graphs.dates > np.datetime64(gone, "D")][0]
    assert gone_code in graphs.graph(gone).codes and gone_code not in graphs.graph(after).codes


def test_rebuild_every_r_dates_reuses_the_graph(panel):
    every = build_graphs(panel, GraphConfig(k=6, window=40, min_periods=25, rebuild_every=5), progress=False)
    daily = build_graphs(panel, GraphConfig(k=6, window=40, min_periods=25), progress=False)
    for i in (100, 105):  # rebuilt dates equal the daily graphs
        np.testing.assert_array_equal(every.graph(every.dates[i]).neighbors, daily.graph(daily.dates[i]).neighbors)
    a, b = every.graph(every.dates[100]), every.graph(every.dates[103])
    code_a = a.codes[a.neighbors.clamp(min=0).numpy()]
    code_b = b.codes[b.neighbors.clamp(min=0).numpy()]
    for ca in set(a.codes) & set(b.codes):  # same neighbour codes, where both dates have them
        ra, rb = int(np.flatnonzero(a.codes == ca)[0]), int(np.flatnonzero(b.codes == ca)[0])
        keep = set(b.codes)
        assert [c for c, v in zip(code_a[ra], a.neighbors[ra]) if v >= 0 and c in keep] == [
            c for c, v in zip(code_b[rb], b.neighbors[rb]) if v >= 0
        ]


def test_store_round_trip_and_one_date_loading(panel, tmp_path):
    graphs = build_graphs(panel, GraphConfig(k=6, window=40, min_periods=25), progress=False)
    ds = GraphStoreDataset(filepath=str(tmp_path / "graphs"))
    assert not ds.exists()
    ds.save(graphs)
    loaded = ds.load()
    assert isinstance(loaded.neighbors, np.memmap)  # one date's graph reads only its rows
    assert loaded.config == graphs.config
    for d in graphs.dates[[0, 77, -1]]:
        a, b = graphs.graph(d), loaded.graph(d)
        np.testing.assert_array_equal(a.codes, b.codes)
        assert a.neighbors.equal(b.neighbors) and a.edge_attr.equal(b.edge_attr)
    with pytest.raises(KeyError, match="no graph for 1999-01-01"):
        loaded.graph("1999-01-01")
    ds.save(graphs)  # overwriting is atomic and leaves no temporary folder behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graphs"]


def test_relative_returns_ignore_a_move_shared_by_every_stock(panel):
    from dataclasses import replace

    from atft_kedro.graph.correlation import build_graphs_from_grid, return_grid

    grid = return_grid(panel)
    common = np.random.default_rng(3).normal(0, 0.03, (len(grid.dates), 1))  # one shock per date, all stocks
    shocked = replace(grid, returns=grid.returns + common)
    dates = grid.dates[[60, 150, 300]]
    cfg = GraphConfig(k=6, window=40, min_periods=25, returns="relative")
    a = build_graphs_from_grid(grid, cfg, dates, progress=False)
    b = build_graphs_from_grid(shocked, cfg, dates, progress=False)
    np.testing.assert_array_equal(a.neighbors, b.neighbors)
    np.testing.assert_allclose(a.edge_attr, b.edge_attr, atol=1e-6)
    raw = replace(cfg, returns="raw")  # raw returns do see it: the shared shock lifts every correlation
    c = build_graphs_from_grid(grid, raw, dates, progress=False)
    d = build_graphs_from_grid(shocked, raw, dates, progress=False)
    assert d.edge_attr[..., 0].mean() > c.edge_attr[..., 0].mean() + 0.1


def test_lead_lag_points_followers_at_their_leaders():
    from atft_kedro.graph.correlation import knn_graph, standardised_window

    rng = np.random.default_rng(8)
    days, n = 251, 200
    r = rng.normal(0, 0.02, (days, n))
    leaders, followers = np.arange(0, 20), np.arange(20, 40)
    r[1:, followers] += 0.8 * r[:-1, leaders]  # follower f moves the day after leader f - 20
    xs, ok = standardised_window(r[1:], np.ones(250), 40)  # the window ending today
    ys, _ = standardised_window(r[:-1], np.ones(250), 40)  # the same window one day earlier
    lead_lag, _ = knn_graph(xs, ok, 3, 0.0, ys=ys)
    plain, _ = knn_graph(xs, ok, 3, 0.0)
    assert (lead_lag[followers, 0].numpy() == leaders).all()  # each follower's strongest neighbour: its leader
    assert (plain[followers, 0].numpy() == leaders).mean() < 0.2  # same-day correlation does not see it


def test_dates_built_side_by_side_equal_one_at_a_time_and_threads_are_restored(panel):
    cfg = GraphConfig(k=6, window=40, min_periods=25, rebuild_every=3)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        side_by_side = build_graphs(panel, cfg, progress=False)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        one_at_a_time = build_graphs(panel, cfg, progress=False)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(side_by_side.neighbors, one_at_a_time.neighbors)
    np.testing.assert_array_equal(side_by_side.edge_attr, one_at_a_time.edge_attr)
    np.testing.assert_array_equal(side_by_side.codes, one_at_a_time.codes)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="graph method must be 'pearson' or 'ewm_shrunk'"):
        GraphConfig(method="spearman")
    with pytest.raises(ValueError, match=r"graph returns must be one of \('raw', 'relative', 'sector_relative'\)"):
        GraphConfig(returns="excess")
    with pytest.raises(ValueError, match=r"min_periods must be in \[1, window=60\]"):
        GraphConfig(min_periods=100)
    with pytest.raises(ValueError, match="blend_window and lead_lag are two different scores"):
        GraphConfig(blend_window=250, lead_lag=True)
    with pytest.raises(ValueError, match=r"graph screen must be one of \('auto', 'bfloat16', 'float32'\), got 'fp16'"):
        GraphConfig(screen="fp16")
    with pytest.raises(ValueError, match=r"graph k is a whole number >= 1, got 0"):  # met otherwise in the build, a minute into a run
        GraphConfig(k=0)
    with pytest.raises(ValueError, match=r"graph threshold is in \[0, 1\], got -0.1"):
        GraphConfig(threshold=-0.1)
    with pytest.raises(ValueError, match=r"graph rebuild_every is a whole number >= 1, got 0"):
        GraphConfig(rebuild_every=0)


@pytest.mark.parametrize("lead_lag", [False, True])
def test_the_screen_parameter_changes_no_neighbour(panel, lead_lag, monkeypatch):
    """``graph.screen``: the bfloat16 screen and the float32 products give the same graphs, ``rho``
    within the float32 bound and every other attribute to the bit."""
    from atft_kedro.graph import correlation

    calls, screened = [], correlation._screened
    monkeypatch.setattr(correlation, "_screened", lambda *a: calls.append(1) or screened(*a))
    built = {}
    for screen in ("bfloat16", "float32"):
        calls.clear()
        built[screen] = build_graphs(panel, GraphConfig(k=6, window=40, min_periods=25, lead_lag=lead_lag, screen=screen), progress=False)
        assert (len(calls) > 0) == (screen == "bfloat16")
    a, b = built["bfloat16"], built["float32"]
    np.testing.assert_array_equal(a.neighbors, b.neighbors)
    assert (a.neighbors >= 0).mean() > 0.5
    assert np.abs(a.edge_attr[..., 0] - b.edge_attr[..., 0]).max() <= 43 * 2.0**-24 * (2 if lead_lag else 1)
    np.testing.assert_array_equal(a.edge_attr[..., 1:], b.edge_attr[..., 1:])
    assert a.config["screen"] == "bfloat16" and b.config["screen"] == "float32"


def _window_with_ties(rng, n=500):
    factor = rng.normal(size=(60, 1)) * 0.01
    window = factor * rng.uniform(0, 2, size=(1, n)) + rng.normal(size=(60, n)) * 0.02
    window[rng.random((60, n)) < 0.05] = np.nan
    window[:40, :7] = np.nan  # short histories
    window[:, 11] = window[:, 10]  # an exact twin: its |rho| ties with stock 10's everywhere
    window[:, 13] = window[:, 12] + rng.normal(size=60) * 3e-8  # a near twin: float32 cannot order 12 and 13
    return window


@pytest.mark.parametrize("screen", [False, True], ids=["float32", "bfloat16_screen"])
@pytest.mark.parametrize("lead_lag, block_rows", [(False, 256), (True, 256), (False, 96)])
def test_fast_knn_equals_the_all_float64_top_k(lead_lag, block_rows, screen):
    """Without lead_lag the float32 product is symmetric and each block computes half of it (96: six
    blocks, a short last one, each finding its left part mirrored from the blocks before). The
    bfloat16 screen (where the CPU lacks bfloat16 tiles, torch emulates it: slower, the same
    numbers) gives the same neighbours and edge values within the same bound."""
    from atft_kedro.graph.correlation import knn_graph, standardised_window

    rng = np.random.default_rng(5)
    window = _window_with_ties(rng)
    xs, ok = standardised_window(window, np.ones(60), 40)
    ys = standardised_window(np.roll(window, 1, axis=0), np.ones(60), 40)[0] * ok if lead_lag else None
    other = xs if ys is None else xs + ys
    rho = (xs.t() @ other).numpy()
    np.fill_diagonal(rho, 0.0)
    # the definition, row by row: |rho| descending, ties to the lower column, threshold, short histories out
    expected = np.full((500, 20), -1)
    for i in np.flatnonzero(ok.numpy()):
        order = sorted((-abs(r), j) for j, r in enumerate(rho[i]) if j != i and ok[j] and abs(r) >= 0.05 and r != 0)
        expected[i, : min(20, len(order))] = [j for _, j in order[:20]]
    nb, slot_rho = knn_graph(xs, ok, 20, 0.05, ys=ys, block_rows=block_rows, screen=screen)
    np.testing.assert_array_equal(nb.numpy(), expected)
    nb = nb.numpy()
    taken = nb >= 0
    exact = np.take_along_axis(rho, np.where(taken, nb, 0), 1)
    bound = 63 * 2.0**-24 * (2 if lead_lag else 1)  # the float32 error bound the builder relies on
    assert np.abs(slot_rho.numpy() - np.where(taken, exact, 0.0)).max() <= bound
    assert (nb[:7] == -1).all() and taken.any()
    assert ((nb[:, :-1] == 10) & (nb[:, 1:] == 11)).any()  # the tie was there to break


@pytest.mark.parametrize("spare", [4, 1])
def test_unclear_rows_are_settled_in_float64(monkeypatch, spare):
    """Rows whose float32 scores sit within the error bound of each other (the twins' rows) go
    through a float64 path: among their kept columns, or whole where near-ties run past the kept
    ones (more of them with fewer spare columns); most rows do not, and all give the definition."""
    from atft_kedro.graph import correlation

    rng = np.random.default_rng(6)
    xs, ok = correlation.standardised_window(_window_with_ties(rng), np.ones(60), 40)
    settled = {"_settle_rows": [], "_exact_rows": []}
    for name, path in list(settled.items()):
        original = getattr(correlation, name)
        monkeypatch.setattr(correlation, name, lambda *a, _f=original, _p=path: _p.append(a[2].clone()) or _f(*a))
    nb, _ = correlation.knn_graph(xs, ok, 20, 0.05, spare=spare, screen=False)
    rows = [i for path in settled.values() for r in path for i in r.tolist()]
    twins_listed = [i for i in range(14, 500) if {10, 11, 12, 13} & set(nb[i].tolist())]  # a tie (or near-tie) in the row
    assert twins_listed and set(twins_listed) <= set(rows) and len(rows) < 250
    assert settled["_settle_rows"] and (spare == 4 or settled["_exact_rows"])
    monkeypatch.undo()
    everything = correlation._exact_rows(xs, xs, torch.arange(500), ok, 20, 0.05)[0]
    assert torch.equal(nb, everything)


@pytest.mark.parametrize("screen", [False, True], ids=["float32", "bfloat16_screen"])
def test_near_ties_past_the_kept_columns_are_found(screen):
    """Eight stocks float32 cannot tell apart: where they straddle a row's k-th place, the float64
    top-k may hold one that float32 ranked below every kept column; such rows are recomputed (the
    screen's candidates hold every one of them: settled among those)."""
    from atft_kedro.graph.correlation import _exact_rows, knn_graph, standardised_window

    for seed in range(5):
        rng = np.random.default_rng(seed)
        window = rng.normal(size=(60, 1)) * 0.01 * rng.uniform(0, 2, size=(1, 500)) + rng.normal(size=(60, 500)) * 0.02
        window[:, 13:20] = window[:, 12:13] + rng.normal(size=(60, 7)) * 3e-8
        xs, ok = standardised_window(window, np.ones(60), 40)
        nb, _ = knn_graph(xs, ok, 20, 0.05, spare=1, screen=screen)
        assert torch.equal(nb, _exact_rows(xs, xs, torch.arange(500), ok, 20, 0.05)[0]), seed


@pytest.mark.parametrize("n, k", [(3001, 21), (500, 20), (40, 9)])
def test_row_topk_equals_torch_topk(n, k):
    from atft_kedro.graph.correlation import row_topk

    values = torch.rand(64, n)
    values[3, ::2] = 0.5  # ties
    top, index = row_topk(values, k)
    expected = torch.topk(values, k, dim=1)
    torch.testing.assert_close(top, expected.values, rtol=0, atol=0)
    assert torch.equal(torch.gather(values, 1, index), top)
    assert (index.sort(1).values.diff(dim=1) > 0).all()  # k distinct columns


def _rows_gone_the_chunk_way(monkeypatch) -> list[int]:
    """The row counts ``row_topk`` hands to its chunk way from now on (a list it appends to)."""
    from atft_kedro.graph import correlation

    chunked, plain = [], correlation._chunk_topk
    monkeypatch.setattr(correlation, "_chunk_topk", lambda v, *a: chunked.append(len(v)) or plain(v, *a))
    return chunked


@pytest.mark.parametrize("n, k", [(3001, 21), (500, 20), (40, 9)])
def test_row_topk_with_a_hint_equals_torch_topk(monkeypatch, n, k):
    """A hint (a nearby date's top columns) only bounds where a row's top-k can be: the result is
    torch.topk's whatever the hint; rows with an unknown hinted column, or whose hinted values do
    not give a positive threshold, go the chunk way."""
    from atft_kedro.graph import correlation

    torch.manual_seed(n)  # which rows go which way below depends on the draw: fixed, whatever ran before
    values = torch.rand(64, n)
    values[3, ::2] = 0.5  # ties
    hint = torch.topk(values + 0.1 * torch.rand(64, n), k + 3, dim=1).indices.numpy()  # the day before
    hint[5] = np.arange(k + 3)  # a poor hint is still a bound
    hint[6, 0] = -1  # a column unknown today
    values[7, hint[7]] = 0.0  # a threshold of 0
    hint[8, 1] = 8  # the row itself
    values[8, 8] = -1.0
    hint[9] = hint[9, 0]  # one column, repeated: its value is no bound
    chunked = _rows_gone_the_chunk_way(monkeypatch)
    top, index = correlation.row_topk(values, k, hint=hint)
    expected = torch.topk(values, k, dim=1)
    torch.testing.assert_close(top, expected.values, rtol=0, atol=0)
    assert torch.equal(torch.gather(values, 1, index), top)
    assert (index.sort(1).values.diff(dim=1) > 0).all()
    assert chunked == [3]  # rows 6, 7 and 9; the others, row 8 too (its k-th hinted value is positive), by the hint


@pytest.mark.parametrize("lead_lag", [False, True])
def test_knn_hinted_by_the_day_before_equals_knn_alone(monkeypatch, lead_lag):
    from atft_kedro.graph.correlation import _carried_columns, _knn, standardised_window

    rng = np.random.default_rng(3)
    window = _window_with_ties(rng)
    yesterday, today = np.arange(500), np.delete(np.arange(501), 40)  # a stock gone, one new (grid column 500)
    window = np.hstack([window, rng.normal(size=(60, 1)) * 0.02])
    stack = []
    for days, members in ((slice(0, 59), yesterday), (slice(1, 60), today)):
        xs, ok = standardised_window(window[days, members], np.ones(59), 40)
        ys = standardised_window(np.roll(window, 1, axis=0)[days, members], np.ones(59), 40)[0] * ok if lead_lag else None
        stack.append((xs, ok, ys))
    kept = _knn(*stack[0][:2], 20, 0.05, ys=stack[0][2], screen=False)[2].numpy()
    hint = _carried_columns(yesterday, kept, today, 501)
    where = {c: i for i, c in enumerate(today)}
    expected = [[where.get(yesterday[c], -1) for c in kept[code]] if code < 500 else [-1] * kept.shape[1] for code in today]
    np.testing.assert_array_equal(hint, expected)  # the gone stock's slots and the new stock's row: -1
    assert (hint == -1).any(1).sum() > 1
    xs, ok, ys = stack[1]
    chunked = _rows_gone_the_chunk_way(monkeypatch)
    hinted = _knn(xs, ok, 20, 0.05, ys=ys, hint=hint, screen=False)
    assert 0 < sum(chunked) < 50  # the hint did the selection for most rows
    alone = _knn(xs, ok, 20, 0.05, ys=ys, screen=False)
    assert torch.equal(alone[0], hinted[0]) and torch.equal(alone[1], hinted[1])


@pytest.mark.parametrize("lead_lag", [False, True])
def test_screened_knn_is_exact_whatever_the_hint(monkeypatch, lead_lag):
    """The bfloat16 screen bounds each row by its hinted columns where they are k + spare distinct
    columns other than itself, else by the row's own top-k: a good, poor or broken hint gives the
    same neighbours, the float64 ones, and the same edge values to the bit (the candidates are
    narrowed to what the row alone gives); a good hint keeps few columns a row to look at."""
    from atft_kedro.graph import correlation

    rng = np.random.default_rng(4)
    window = _window_with_ties(rng)
    xs, ok = correlation.standardised_window(window[1:], np.ones(59), 40)
    ys = correlation.standardised_window(window[:-1], np.ones(59), 40)[0] * ok if lead_lag else None
    other = xs if ys is None else xs + ys
    expected = correlation._exact_rows(xs, other, torch.arange(500), ok, 20, 0.05)
    day_before = correlation.standardised_window(window[:-1], np.ones(59), 40)
    before_that = correlation.standardised_window(np.roll(window, 1, axis=0)[:-1], np.ones(59), 40)[0] * day_before[1] if lead_lag else None
    good = correlation._knn(*day_before, 20, 0.05, ys=before_that, screen=True)[2].numpy()
    poor = np.tile(np.arange(24), (500, 1))  # the first stocks: a low bound, itself in some rows
    broken = good.copy()
    broken[::3, 1] = broken[::3, 0]  # a column twice
    broken[1::3, 2] = -1  # a column unknown today
    candidates = []
    flat, scored = [], []
    monkeypatch.setattr(np, "flatnonzero", lambda a, _f=np.flatnonzero: flat.append(len(r := _f(a))) or r)
    sampled = correlation._sampled_products
    monkeypatch.setattr(correlation, "_sampled_products", lambda *a: scored.append(a[3].copy()) or sampled(*a))
    values = []
    for hint in (None, good, poor, broken):
        flat.clear()
        nb, slot_rho, _ = correlation._knn(xs, ok, 20, 0.05, ys=ys, hint=hint, screen=True)
        assert torch.equal(nb, expected[0])
        assert (slot_rho - expected[1]).abs().max() <= 62 * 2.0**-24 * (2 if lead_lag else 1)
        values.append(slot_rho)
        candidates.append(sum(flat) / ok.sum().item())  # columns looked at a row
    assert all(np.array_equal(scored[0], other) for other in scored[1:])  # the same candidates scored
    assert all(torch.equal(values[0], other) for other in values[1:])
    alone, hinted, low = candidates[:3]
    assert hinted < 60 and alone < 60 and low > 5 * hinted  # of 499 columns a row


def test_bfloat16_scores_stay_within_the_screens_bound():
    """The screen's premise, on this CPU's bfloat16 product: every |bfloat16 score - exact| is within
    a + b |bfloat16 score| (``bfloat16_error``), and the bound is not loose by orders of magnitude."""
    from atft_kedro.graph.correlation import bfloat16_error, standardised_window

    rng = np.random.default_rng(9)
    xs, _ = standardised_window(_window_with_ties(rng, n=800), np.ones(60), 40)
    exact = (xs.t() @ xs).numpy()
    xb = xs.t().contiguous().to(torch.bfloat16)
    screen = torch.mm(xb, xb.t()).double().numpy()
    a, b = bfloat16_error(60, float(xs.norm(dim=0).max()) ** 2)
    error = np.abs(screen - exact)
    assert (error <= a + b * np.abs(screen)).all()
    assert error.max() > 0.05 * a  # the rounding is there to bound


def test_graphs_are_scored_against_the_planted_clusters(panel, tiny_market, monkeypatch):
    from atft_kedro.graph.quality import planted_clusters, planted_structure_recall, true_leader_neighbours
    from atft_kedro.graph.store import GraphSet

    oracle = tiny_market.oracle
    dates = panel["Date"].unique().sort()
    splits = pl.DataFrame({"Date": dates, "split": ["train"] * (len(dates) - 50) + ["test"] * 50})
    built = build_graphs(panel, GraphConfig(k=6, window=40, min_periods=25), progress=False)

    # the true graph: every stock's neighbours are the leaders of its cluster (itself excluded)
    cluster, leader = planted_clusters(oracle, built.codes)
    rows = []
    for i in range(len(built)):
        lo, hi = built.offsets[i], built.offsets[i + 1]
        nb = true_leader_neighbours(cluster[lo:hi], leader[lo:hi], 6)
        for r in range(hi - lo):  # the same, row by row
            mates = np.flatnonzero((cluster[lo:hi] == cluster[lo + r]) & leader[lo:hi] & (np.arange(hi - lo) != r))[:6]
            assert nb[r].tolist() == mates.tolist() + [-1] * (6 - len(mates))
        rows.append(nb.astype(np.int32))
    true_graph = GraphSet(built.dates, built.offsets, built.codes, np.concatenate(rows), built.edge_attr)

    perfect = planted_structure_recall(true_graph, oracle, splits)
    assert set(perfect) == {"train", "test"} and perfect["test"]["dates"] == 50
    assert perfect["test"]["mate_precision"] == 1.0 and perfect["test"]["leader_precision"] == 1.0
    assert perfect["test"]["followers_with_a_leader"] == 1.0  # followers whose leaders trade that date
    assert 0.3 < perfect["test"]["mate_recall"] < 1.0  # the leaders are about half of the mates

    found = planted_structure_recall(built, oracle, splits)["test"]
    for key in ("mate_precision", "leader_precision", "followers_with_a_leader"):
        assert 0.0 < found[key] < perfect["test"][key]
    assert 0.0 < found["mate_recall"] < 1.0
    # by hand on the last date: mate recall, and what random neighbours would give a follower
    lo, hi = int(built.offsets[-2]), int(built.offsets[-1])
    c, lead, nb = cluster[lo:hi], leader[lo:hi], np.asarray(built.neighbors[lo:hi])
    recall, chance = [], []
    for r in range(hi - lo):
        mates = set(np.flatnonzero((c == c[r]) & (np.arange(hi - lo) != r)))
        if mates:
            recall.append(len(mates & set(nb[r][nb[r] >= 0])) / len(mates))
        if not lead[r] and (lead[list(mates)].sum() if mates else 0):
            chance.append(lead[list(mates)].sum() / (hi - lo - 1))
    last = pl.DataFrame({"Date": [dates[-1]], "split": ["test"]})
    one = planted_structure_recall(built, oracle, last)["test"]
    assert one["mate_recall"] == pytest.approx(np.mean(recall)) and one["leader_precision_chance"] == pytest.approx(np.mean(chance))
    monkeypatch.setattr("atft_kedro.graph.quality.ROW_BLOCK", 997)  # many blocks, one ragged
    assert planted_structure_recall(built, oracle, splits)["test"] == found

    assert planted_structure_recall(built, oracle.clear(), splits) == {}  # real data: nothing to score
    with pytest.raises(ValueError, match="stocks that the oracle table does not"):
        planted_structure_recall(built, oracle.filter(pl.col("Code") != built.codes[0]), splits)


def test_the_long_lead_attribute_finds_who_moves_a_day_earlier_whatever_the_block():
    """neighbour_leads_long: high on the edge from a stock to the one it follows by a day, ~0 the
    other way, 0 on padding; the block the pass advances by changes nothing but rounding."""
    rng = np.random.default_rng(3)
    days, stocks = 300, 5
    r = rng.normal(size=(days, stocks))
    r[1:, 1] += 0.8 * r[:-1, 0]  # stock 1 follows stock 0 by a day
    r[rng.random((days, stocks)) < 0.05] = np.nan
    members = [np.arange(stocks)] * 3
    ends = np.array([120, 200, 300])
    neighbors = np.tile(np.array([[1, 2], [0, 2], [0, 1], [-1, -1], [0, 1]]), (3, 1))  # three dates, five rows each
    offsets = np.arange(4) * stocks
    out = {b: long_lead_correlations(r, ends, members, neighbors, offsets, 50.0, block=b) for b in (1, 7, 16, 64)}
    for b in (7, 16, 64):
        np.testing.assert_allclose(out[b], out[1], atol=1e-6)
    values = out[16].reshape(3, stocks, 2)
    assert (values[:, 1, 0] > 0.4).all() and (np.abs(values[:, 0, 0]) < 0.2).all()  # 1 <- 0 leads; 0 <- 1 does not
    assert (values[:, 3] == 0).all()


def test_the_long_lead_passes_over_parts_of_the_dates_fill_the_same_rows(panel):
    """The build runs the long lead-lag pass as several passes over disjoint runs of dates (one a
    thread): the attribute is the one pass's, and each part fills only its own dates' rows."""
    from atft_kedro.graph.correlation import graph_returns, return_grid

    grid = return_grid(panel)
    returns = graph_returns(grid, "relative")
    members = [np.flatnonzero(grid.present[d]) for d in range(len(grid.dates))]
    rng = np.random.default_rng(0)
    neighbors = np.concatenate([rng.integers(-1, len(m), size=(len(m), 4)) for m in members])
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in members])])
    ends = np.arange(len(grid.dates)) + 1
    whole = long_lead_correlations(returns, ends, members, neighbors, offsets, 30.0)
    parts = np.zeros_like(whole)
    early, late = np.array_split(np.arange(len(ends)), 2)
    long_lead_correlations(returns, ends, members, neighbors, offsets, 30.0, dates=late, out=parts)
    assert (parts[: offsets[late[0]]] == 0).all() and (parts[offsets[late[0]] :] != 0).any()
    long_lead_correlations(returns, ends, members, neighbors, offsets, 30.0, dates=early, out=parts)
    np.testing.assert_allclose(parts, whole, atol=1e-6)


def test_lag_correlations_are_the_edges_float64_dot_products():
    from atft_kedro.graph.correlation import _edge_pattern, _lag_correlations

    g = torch.Generator().manual_seed(3)
    w, n, k = 250, 300, 12
    xs, ys = (torch.randn(w, n, dtype=torch.float64, generator=g) for _ in range(2))
    xs, ys = xs / xs.norm(dim=0), ys / ys.norm(dim=0)
    neighbors = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(n)])  # unsorted columns
    neighbors[::5, -4:] = -1  # padding at the end of a row
    neighbors[7] = -1  # a stock without neighbours
    _edge_pattern(neighbors, check_invariants=True)  # a valid CSR pattern: sorted, unique columns a row
    j = neighbors.clamp_min(0)
    exact = torch.stack([(ys.t()[j] * xs.t()[:, None]).sum(-1), (xs.t()[j] * ys.t()[:, None]).sum(-1)], -1)
    exact = torch.where((neighbors >= 0)[..., None], exact, 0.0)
    got = _lag_correlations(xs, ys, neighbors)
    assert got.dtype == torch.float32 and got.shape == (n, k, 2)
    np.testing.assert_allclose(got.numpy(), exact.numpy(), atol=(w + 3) * 2.0**-24)
    assert (got[neighbors < 0] == 0).all()


def test_consecutive_dates_hand_on_their_window_and_equal_dates_built_alone(panel, monkeypatch):
    from atft_kedro.graph import correlation

    ranges = []
    standardised = correlation._standardised
    monkeypatch.setattr(correlation, "_standardised", lambda *a: ranges.append(len(a[-1])) or standardised(*a))
    cfg = GraphConfig(k=6, window=40, min_periods=25, returns="relative", lead_lag=True)
    dates = panel["Date"].unique().sort().to_numpy()[95:107]  # the stocks change at date 98: no hand-over there
    together = build_graphs(panel, cfg, dates=dates, progress=False)
    assert ranges.count(1) >= 5  # most dates took the day before's window instead of standardising it again
    for d in dates:
        alone = build_graphs(panel, cfg, dates=[d], progress=False).graph(d)
        g = together.graph(d)
        np.testing.assert_array_equal(g.neighbors.numpy(), alone.neighbors.numpy())
        np.testing.assert_array_equal(g.edge_attr.numpy(), alone.edge_attr.numpy())
