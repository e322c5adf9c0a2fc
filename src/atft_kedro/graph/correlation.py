"""Per-date correlation kNN graphs (SPEC section 4), vectorised and leak-free.

For date t the window holds the W daily returns of the calendar dates ending at t - lag (lag 0: the
close of t is known when the graph of t is used; lag 1: one day more conservative). A stock's
returns are standardised on the days it has one; a missing day counts as its window mean (it adds
nothing to any covariance). Stocks with fewer than ``min_periods`` returns in the window get no
neighbours and are nobody's neighbour: no edge is ever made up.

    rho = Xs^T Xs          one matrix product per date, Xs = sqrt(w) (X - mean) / norm, per column

``returns="relative"`` correlates each stock's return minus the equal-weighted mean return of that
date's stocks (known at the same close, so no leak): the market mode, which otherwise lifts every
correlation alike, is taken out and the stock-specific co-movement decides the neighbours.

``lead_lag=True`` scores a pair by rho(i, j) + rho_lag(i, j), where rho_lag is the correlation of
stock i's returns with stock j's returns one day earlier over the same window (j leads i): the
graph of a stock that follows others then points at the stocks that move before it. It is still
one product per date, ``Xs^T (Xs + Ys)`` with ``Ys`` the window one day earlier, and uses only
returns up to t - lag. The edge attribute then holds that score.

``method="pearson"`` weighs the window equally; ``"ewm_shrunk"`` uses exponential weights (half-life
``halflife``) and shrinks every correlation toward 0 by ``shrinkage`` (a Ledoit-Wolf-style target of
the identity correlation matrix), which steadies the weakest edges.

Each stock keeps its top-k other stocks by |rho| with |rho| >= threshold, strongest first, padded
with -1: ``neighbors [N_t, k]`` indexes that date's stocks (panel rows of the date, in Code order),
``edge_attr [N_t, k, 3]`` = [rho, same Sector33, same MarketCode] (0 on padding).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from atft_kedro.graph.store import GraphSet


@dataclass(frozen=True)
class GraphConfig:
    window: int = 60
    k: int = 20
    threshold: float = 0.05
    min_periods: int = 40
    method: str = "pearson"  # pearson | ewm_shrunk
    halflife: float = 20.0
    shrinkage: float = 0.1
    lag: int = 0
    rebuild_every: int = 1
    returns: str = "raw"  # raw | relative (minus the date's cross-sectional mean return)
    lead_lag: bool = False  # score pairs by rho + the correlation with the other stock's previous day

    def __post_init__(self):
        if self.returns not in ("raw", "relative"):
            raise ValueError(f"graph returns must be 'raw' or 'relative', got {self.returns!r}")
        if self.method not in ("pearson", "ewm_shrunk"):
            raise ValueError(f"graph method must be 'pearson' or 'ewm_shrunk', got {self.method!r}")
        if not 1 <= self.min_periods <= self.window:
            raise ValueError(f"min_periods must be in [1, window={self.window}], got {self.min_periods}")
        if self.lag not in (0, 1):
            raise ValueError(f"lag must be 0 (window ends at t) or 1 (ends at t-1), got {self.lag}")

    def weights(self) -> np.ndarray:
        """Window weights, oldest first."""
        if self.method == "pearson":
            return np.ones(self.window)
        age = np.arange(self.window)[::-1]
        return 0.5 ** (age / self.halflife)


@dataclass(frozen=True)
class ReturnGrid:
    """Daily returns on the full calendar: ``returns [D, S]`` (NaN = no return that day)."""

    dates: np.ndarray  # [D] datetime64[D]
    codes: np.ndarray  # [S] str, sorted
    returns: np.ndarray  # [D, S] float64
    present: np.ndarray  # [D, S] bool: the stock is in the cross-section of that date
    sector: np.ndarray  # [S] sector33 id
    market: np.ndarray  # [S] market id


def return_grid(panel: pl.DataFrame) -> ReturnGrid:
    """Pivot the panel into dense [date, stock] arrays (one pass, no loop over stocks)."""
    p = panel.sort("Code", "Date").with_columns(
        ret=pl.when(pl.col("traded") & pl.col("traded").shift(1).over("Code"))
        .then(pl.col("close") / pl.col("close").shift(1).over("Code") - 1)
    )
    dates = p["Date"].unique().sort()
    codes = p["Code"].unique().sort()
    d_idx = pl.DataFrame({"Date": dates, "d": np.arange(len(dates))})
    s_idx = pl.DataFrame({"Code": codes, "s": np.arange(len(codes))})
    p = p.join(d_idx, on="Date").join(s_idx, on="Code")
    d, s = p["d"].to_numpy(), p["s"].to_numpy()
    returns = np.full((len(dates), len(codes)), np.nan)
    returns[d, s] = p["ret"].fill_null(np.nan).to_numpy()
    present = np.zeros((len(dates), len(codes)), dtype=bool)
    present[d, s] = True
    attrs = p.group_by("s").agg(pl.col("Sector33Code").last(), pl.col("MarketCode").last()).sort("s")
    sector = attrs["Sector33Code"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    market = attrs["MarketCode"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    return ReturnGrid(dates.to_numpy().astype("datetime64[D]"), codes.to_numpy().astype(str), returns, present, sector, market)


def graph_returns(grid: ReturnGrid, kind: str) -> np.ndarray:
    """[D, S] returns the graphs correlate: ``raw``, or ``relative`` to each date's equal-weighted
    mean over the stocks with a return that day (same-day information only)."""
    if kind == "raw":
        return grid.returns
    valid = np.isfinite(grid.returns)
    mean = np.where(valid, grid.returns, 0.0).sum(1, keepdims=True) / np.maximum(valid.sum(1, keepdims=True), 1)
    return grid.returns - mean


def standardised_window(window: np.ndarray, weights: np.ndarray, min_periods: int, shrinkage: float = 0.0):
    """[W, N] returns (NaN = missing) -> (xs [W, N], ok [N]) with xs^T xs = the correlation matrix
    (shrunk by ``shrinkage``): columns centred on their weighted mean, missing days at 0, scaled to
    unit norm; stocks with fewer than ``min_periods`` returns get an all-zero column."""
    x = torch.as_tensor(np.array(window, dtype=np.float64))
    w = torch.as_tensor(weights, dtype=torch.float64)[:, None]  # (W, 1)
    valid = ~torch.isnan(x)
    ok = valid.sum(0) >= min_periods  # (N,)
    mean = torch.where(valid, x, 0.0).mul(w).sum(0) / (w * valid).sum(0).clamp_min(1e-300)  # (N,)
    xw = torch.where(valid, x - mean, 0.0) * w.sqrt()  # (W, N)
    norm = xw.norm(dim=0)  # (N,)
    ok &= norm > 0
    scale = torch.where(ok, (1.0 - shrinkage) ** 0.5 / norm.clamp_min(1e-300), 0.0)
    return xw * scale, ok


def correlation_matrix(window: np.ndarray, weights: np.ndarray, min_periods: int, shrinkage: float = 0.0):
    """[W, N] returns -> (rho [N, N] with 0 on the diagonal and for short-history stocks, ok [N])."""
    xs, ok = standardised_window(window, weights, min_periods, shrinkage)
    rho = xs.t() @ xs  # (N, N): the one matrix product
    rho.fill_diagonal_(0.0)
    return rho, ok


def knn_from_correlation(rho: torch.Tensor, ok: torch.Tensor, k: int, threshold: float):
    """Top-k |rho| per row with |rho| >= ``threshold`` (self and short-history stocks excluded;
    their rows and columns of ``rho`` are 0) -> (neighbors [N, k] int64 with -1 padding, rho of each
    slot [N, k])."""
    n = rho.shape[0]
    neighbors = torch.full((n, k), -1, dtype=torch.int64)
    slot_rho = torch.zeros((n, k), dtype=rho.dtype)
    kk = min(k, max(n - 1, 0))
    if kk == 0:
        return neighbors, slot_rho
    score = rho.abs()
    score.fill_diagonal_(-1.0)
    values, index = torch.topk(score, kk, dim=1)  # strongest first; ties resolved by topk
    keep = (values >= threshold) & (values > 0) & ok[:, None] & ok[index]
    neighbors[:, :kk] = torch.where(keep, index, -1)
    slot_rho[:, :kk] = torch.where(keep, torch.gather(rho, 1, index), 0.0)
    return neighbors, slot_rho


def knn_graph(xs: torch.Tensor, ok: torch.Tensor, k: int, threshold: float, margin: int = 8, ys: torch.Tensor | None = None):
    """Top-k neighbours from standardised returns ``xs [W, N]`` (float64), fast and exact. With
    ``ys`` (the window one day earlier, standardised alike) the score is ``xs^T (xs + ys)``:
    rho plus the lead-lag correlation.

    The one N x N product and the top-k scan run in float32, keeping ``k + margin`` candidates per
    stock; their correlations are then recomputed in float64 (N x (k + margin) dot products) and the
    final top-k is taken on those. The result equals the all-float64 ``knn_from_correlation`` unless
    more than ``margin`` correlations sit within float32 rounding (~1e-7) of the k-th one.
    """
    n = xs.shape[1]
    other = xs if ys is None else xs + ys  # (W, N): score = xs^T other
    kc = min(k + margin, max(n - 1, 0))
    if kc <= k:  # a small cross-section: do it all in float64
        rho = xs.t() @ other
        rho.fill_diagonal_(0.0)
        return knn_from_correlation(rho, ok, k, threshold)
    x32 = xs.to(torch.float32)
    o32 = x32 if ys is None else other.to(torch.float32)
    score = (x32.t() @ o32).abs_()  # (N, N) float32: the one product per date
    score.fill_diagonal_(-1.0)
    cand = torch.topk(score, kc, dim=1).indices  # (N, kc)
    # float64 scores of the candidates, one slot at a time: gathering all [N, kc, W] at once costs
    # ~7x more (memory traffic, not arithmetic), with bit-identical results
    xt, ot = xs.t().contiguous(), other.t().contiguous()  # (N, W)
    exact = torch.empty(cand.shape, dtype=xs.dtype)  # (N, kc)
    for j in range(kc):
        exact[:, j] = (xt * ot[cand[:, j]]).sum(1)
    exact = torch.where(cand == torch.arange(n)[:, None], torch.zeros_like(exact), exact)
    order = torch.sort(exact.abs(), dim=1, descending=True, stable=True).indices[:, :k]
    index = torch.gather(cand, 1, order)
    rho = torch.gather(exact, 1, order)
    keep = (rho.abs() >= threshold) & (rho.abs() > 0) & ok[:, None] & ok[index]
    neighbors = torch.full((n, k), -1, dtype=torch.int64)
    slot_rho = torch.zeros((n, k), dtype=xs.dtype)
    neighbors[:, : index.shape[1]] = torch.where(keep, index, -1)
    slot_rho[:, : index.shape[1]] = torch.where(keep, rho, 0.0)
    return neighbors, slot_rho


def _edge_attr(neighbors: np.ndarray, slot_rho: np.ndarray, sector: np.ndarray, market: np.ndarray) -> np.ndarray:
    valid = neighbors >= 0
    j = np.where(valid, neighbors, 0)
    same_sector = (sector[j] == sector[:, None]) & valid
    same_market = (market[j] == market[:, None]) & valid
    return np.stack([np.where(valid, slot_rho, 0.0), same_sector, same_market], axis=-1).astype(np.float32)


def _reuse(prev_codes: np.ndarray, prev_nbrs: np.ndarray, prev_rho: np.ndarray, codes: np.ndarray):
    """Carry a graph built on an earlier date onto today's cross-section (same stocks by code;
    stocks new today have no neighbours, neighbours gone today are dropped, valid slots first)."""
    k = prev_nbrs.shape[1]
    pos_prev = {c: i for i, c in enumerate(prev_codes)}
    rows = np.array([pos_prev.get(c, -1) for c in codes])
    today = np.full(len(prev_codes), -1)
    found = rows >= 0
    today[rows[found]] = np.flatnonzero(found)
    nbrs = np.full((len(codes), k), -1, dtype=np.int64)
    rho = np.zeros((len(codes), k))
    src = prev_nbrs[rows[found]]
    mapped = np.where(src >= 0, today[np.where(src >= 0, src, 0)], -1)
    order = np.argsort(mapped < 0, axis=1, kind="stable")
    nbrs[found] = np.take_along_axis(mapped, order, 1)
    rho[found] = np.where(nbrs[found] >= 0, np.take_along_axis(prev_rho[rows[found]], order, 1), 0.0)
    return nbrs, rho


def _window(returns: np.ndarray, end: int, length: int, members: np.ndarray) -> np.ndarray:
    """[length, len(members)] returns of the dates before ``end``, NaN-padded at the start."""
    window = returns[max(end - length, 0) : max(end, 0), members]
    if window.shape[0] < length:  # the first dates: pad with missing days
        window = np.vstack([np.full((length - window.shape[0], len(members)), np.nan), window])
    return window


def build_graphs(panel: pl.DataFrame, cfg: GraphConfig, dates=None, progress: bool = True) -> GraphSet:
    """A graph for every date of the panel (or of ``dates``)."""
    return build_graphs_from_grid(return_grid(panel), cfg, dates, progress)


def build_graphs_from_grid(grid: ReturnGrid, cfg: GraphConfig, dates=None, progress: bool = True) -> GraphSet:
    returns = graph_returns(grid, cfg.returns)
    weights = cfg.weights()
    shrink = cfg.shrinkage if cfg.method == "ewm_shrunk" else 0.0
    wanted = grid.dates if dates is None else np.asarray(dates, dtype="datetime64[D]")
    positions = np.searchsorted(grid.dates, wanted)
    out_codes, out_nbrs, out_attr, counts = [], [], [], []
    last = None
    for i, d in enumerate(tqdm(positions, desc="graphs", unit="date", disable=not progress)):
        members = np.flatnonzero(grid.present[d])  # this date's stocks, in Code order
        codes = grid.codes[members]
        if last is None or i % cfg.rebuild_every == 0:
            end = d + 1 - cfg.lag
            xs, ok = standardised_window(_window(returns, end, cfg.window, members), weights, cfg.min_periods, shrink)
            ys = None
            if cfg.lead_lag:  # the same window one day earlier; a pair needs both stocks in both
                ys, ok_y = standardised_window(_window(returns, end - 1, cfg.window, members), weights, cfg.min_periods, shrink)
                ok &= ok_y
                xs, ys = xs * ok, ys * ok
            nbrs_t, rho_t = knn_graph(xs, ok, cfg.k, cfg.threshold, ys=ys)
            nbrs, slot_rho = nbrs_t.numpy(), rho_t.numpy()
            last = (codes, nbrs, slot_rho)
        else:
            nbrs, slot_rho = _reuse(*last, codes)
        out_codes.append(codes)
        out_nbrs.append(nbrs.astype(np.int32))
        out_attr.append(_edge_attr(nbrs, slot_rho, grid.sector[members], grid.market[members]))
        counts.append(len(members))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return GraphSet(
        dates=wanted,
        offsets=offsets,
        codes=np.concatenate(out_codes) if out_codes else np.array([], dtype=str),
        neighbors=np.concatenate(out_nbrs) if out_nbrs else np.zeros((0, cfg.k), np.int32),
        edge_attr=np.concatenate(out_attr) if out_attr else np.zeros((0, cfg.k, 3), np.float32),
        config=asdict(cfg),
    )
