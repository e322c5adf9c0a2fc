"""Per-date correlation kNN graphs (SPEC section 4), vectorised and leak-free.

For date t the window holds the W daily returns of the calendar dates ending at t - lag (lag 0: the
close of t is known when the graph of t is used; lag 1: one day more conservative). A stock's
returns are standardised on the days it has one; a missing day counts as its window mean (it adds
nothing to any covariance). Stocks with fewer than ``min_periods`` returns in the window get no
neighbours and are nobody's neighbour: no edge is ever made up. The graph of t has a node for each
stock that traded on t (one suspended on t is not in that day's cross-section).

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

``returns="sector_relative"`` takes each return minus the mean return of its Sector33 that date
(the market and the sector modes out): what is left is what a stock shares with peers that are not
simply its sector, e.g. the other members of a supply chain.

``blend_window`` (e.g. 250 beside ``window`` 60) scores a pair by the mean of the two windows'
correlations: the long window finds persistent peers whose correlation a short window cannot tell
from noise, the short one follows what changed. Shrinking every correlation toward 0 by one factor
(``ewm_shrunk``'s ``shrinkage``, a Ledoit-Wolf-style target) leaves each stock's ranking of the others,
and so its neighbours, unchanged: it only scales the edge values.

Each stock keeps its top-k other stocks by |score| with |score| >= threshold, strongest first,
padded with -1: ``neighbors [N_t, k]`` indexes that date's stocks (panel rows of the date, in Code
order). ``edge_attr [N_t, k, E]`` holds, per edge from neighbour j to stock i (0 on padding), the
``EDGE_ATTRIBUTES``:

* ``rho``: the pair's score (the correlation, or what ``lead_lag`` / ``blend_window`` make of it);
* ``same_sector33``, ``same_market``: 1 when the two share a Sector33Code / MarketCode;
* ``rel_log_turnover``: log of j's mean traded value over the window minus i's (size and liquidity:
  bigger, more liquid firms lead smaller ones within industries, Hou 2007);
* ``rel_log_volatility``: log of the volatility of j's returns (those the graph correlates) over
  the window minus i's;
* ``neighbour_leads``: corr(i's return on day s, j's return on day s - 1) over the window;
* ``neighbour_follows``: corr(i's return on day s - 1, j's return on day s): the other direction.
* ``neighbour_leads_long``: ``neighbour_leads`` over every day up to t - lag, exponentially weighted
  (half-life ``lead_halflife`` days), on the returns the graph correlates, uncentred (daily means
  are ~0 next to their spread):

      sum_s l^(e-1-s) r_i[s] r_j[s-1] / sqrt(sum_s l^(e-1-s) r_i[s]^2 * sum_s l^(e-1-s) r_j[s-1]^2),

  over the days s < e = t + 1 - lag, l = 0.5^(1 / lead_halflife), missing returns 0. A day-apart
  correlation of 0.1 is below one window's sampling error (~0.1 at 120 days) and above a 250-day
  half-life's (~0.04): the window says who is a peer, the long history who leads
  (docs/what_training_has_shown.md, 2026-12-02). One pass over the dates in order
  (``long_lead_correlations``): the sums over all pairs advance a block of days at a time by one
  matrix product; a date's edges take the block's sums plus their own few days.

All of it uses returns and traded values up to t - lag only.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import torch
from tqdm.auto import tqdm

from atft_kedro.checks import number_in, whole_number
from atft_kedro.features.panel import date_stock_cells
from atft_kedro.graph.store import GraphSet
from atft_kedro.threads import torch_threads


EDGE_ATTRIBUTES = (
    "rho", "same_sector33", "same_market", "rel_log_turnover", "rel_log_volatility", "neighbour_leads", "neighbour_follows",
    "neighbour_leads_long",
)  # fmt: skip
RETURNS = ("raw", "relative", "sector_relative")
# the kNN's candidates: a bfloat16 screen where the CPU has AMX tiles (auto), or always / never
SCREENS = {"auto": None, "bfloat16": True, "float32": False}

# the lag correlations' sampled products take their edges as a CSR pattern, which torch calls beta
# once a process (a filter set here, not around the call: the dates are built on several threads)
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state", category=UserWarning)


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
    returns: str = "raw"  # raw | relative (minus the date's mean return) | sector_relative (minus the sector's)
    lead_lag: bool = False  # score pairs by rho + the correlation with the other stock's previous day
    blend_window: int | None = None  # also correlate over this many days and score by the mean of the two
    lead_halflife: float = 250.0  # half-life in days of the neighbour_leads_long attribute's weights
    screen: str = "auto"  # auto | bfloat16 | float32: how the kNN finds its candidates (``_knn``)

    def __post_init__(self):
        for name, least in (("window", 2), ("k", 1), ("min_periods", 1), ("rebuild_every", 1)):
            if not whole_number(getattr(self, name), least):
                raise ValueError(f"graph {name} is a whole number >= {least}, got {getattr(self, name)!r}")
        for name, (low, high) in (("threshold", (0, 1)), ("shrinkage", (0, 1))):
            if not number_in(getattr(self, name), low, high):
                raise ValueError(f"graph {name} is in [{low}, {high}], got {getattr(self, name)!r}")
        if not number_in(self.halflife, 0, above_low=True):
            raise ValueError(f"graph halflife is a positive number of days, got {self.halflife!r}")
        if self.returns not in RETURNS:
            raise ValueError(f"graph returns must be one of {RETURNS}, got {self.returns!r}")
        if self.blend_window is not None and self.blend_window < self.min_periods:
            raise ValueError(f"blend_window must be at least min_periods={self.min_periods}, got {self.blend_window}")
        if self.blend_window and self.lead_lag:
            raise ValueError("blend_window and lead_lag are two different scores: choose one")
        if self.method not in ("pearson", "ewm_shrunk"):
            raise ValueError(f"graph method must be 'pearson' or 'ewm_shrunk', got {self.method!r}")
        if not self.lead_halflife > 0:
            raise ValueError(f"lead_halflife must be a positive number of days, got {self.lead_halflife}")
        if not 1 <= self.min_periods <= self.window:
            raise ValueError(f"min_periods must be in [1, window={self.window}], got {self.min_periods}")
        if self.screen not in SCREENS:
            raise ValueError(f"graph screen must be one of {tuple(SCREENS)}, got {self.screen!r}")
        if self.lag not in (0, 1):
            raise ValueError(f"lag must be 0 (window ends at t) or 1 (ends at t-1), got {self.lag}")

    def screened(self) -> bool:
        """Whether the kNN screens its candidates in bfloat16 (``screen``; auto: where the CPU has AMX tiles)."""
        return BFLOAT16_SCREEN if SCREENS[self.screen] is None else SCREENS[self.screen]

    def weights(self, window: int | None = None) -> np.ndarray:
        """Window weights, oldest first."""
        window = window or self.window
        if self.method == "pearson":
            return np.ones(window)
        age = np.arange(window)[::-1]
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
    turnover: np.ndarray  # [D, S] float64 traded value (NaN = not traded that day)


def return_grid(panel: pl.DataFrame) -> ReturnGrid:
    """Pivot the panel into dense [date, stock] arrays (one pass, no loop over stocks)."""
    p = panel.sort("Code", "Date").with_columns(
        ret=pl.when(pl.col("traded") & pl.col("traded").shift(1).over("Code"))
        .then(pl.col("close") / pl.col("close").shift(1).over("Code") - 1),
        value=pl.when(pl.col("traded")).then(pl.col("turnover")),
    )
    dates, codes, d, s = date_stock_cells(p)
    p = p.with_columns(s=pl.Series(s))
    returns = np.full((len(dates), len(codes)), np.nan)
    returns[d, s] = p["ret"].fill_null(np.nan).to_numpy()
    present = np.zeros((len(dates), len(codes)), dtype=bool)  # a date's nodes: the stocks that traded that day
    present[d, s] = p["traded"].to_numpy()
    turnover = np.full((len(dates), len(codes)), np.nan)
    turnover[d, s] = p["value"].fill_null(np.nan).to_numpy()
    attrs = p.group_by("s").agg(pl.col("Sector33Code").last(), pl.col("MarketCode").last()).sort("s")
    sector = attrs["Sector33Code"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    market = attrs["MarketCode"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    return ReturnGrid(dates.to_numpy().astype("datetime64[D]"), codes.to_numpy().astype(str), returns, present, sector, market, turnover)


def graph_returns(grid: ReturnGrid, kind: str) -> np.ndarray:
    """[D, S] returns the graphs correlate: ``raw``; ``relative`` to each date's equal-weighted
    mean over the stocks with a return that day; ``sector_relative`` to that mean over the stock's
    Sector33 (same-day information only)."""
    if kind == "raw":
        return grid.returns
    valid = np.isfinite(grid.returns)
    r = np.where(valid, grid.returns, 0.0)
    if kind == "relative":
        mean = r.sum(1, keepdims=True) / np.maximum(valid.sum(1, keepdims=True), 1)
        return grid.returns - mean
    groups = np.zeros((grid.returns.shape[1], int(grid.sector.max()) + 1))  # (S, sectors) membership
    groups[np.arange(len(grid.sector)), grid.sector] = 1.0
    sums, counts = r @ groups, valid.astype(np.float64) @ groups  # (D, sectors)
    return grid.returns - (sums / np.maximum(counts, 1))[:, grid.sector]


def window_scales(grid: ReturnGrid, returns: np.ndarray, window: int, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Per date t and stock, over the same days as the graph's window (the ``window`` dates ending
    at t - lag): (log of the mean traded value, log of the volatility of ``returns`` [D, S], the
    returns the graph correlates), NaN without data. Running sums over the date axis: one pass."""

    def rolling_mean(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok = np.isfinite(x)
        c = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(np.where(ok, x, 0.0), 0)])
        n = np.vstack([np.zeros((1, x.shape[1])), np.cumsum(ok, 0)])
        end = np.clip(np.arange(x.shape[0]) + 1 - lag, 0, None)
        start = np.clip(end - window, 0, None)
        count = n[end] - n[start]
        return (c[end] - c[start]) / np.maximum(count, 1), count

    value, n_value = rolling_mean(grid.turnover)
    mean, n = rolling_mean(returns)
    square, _ = rolling_mean(returns**2)
    variance = np.maximum(square - mean**2, 0.0)
    with np.errstate(divide="ignore"):
        log_value = np.where(n_value > 0, np.log1p(value), np.nan)
        log_vol = np.where((n > 1) & (variance > 0), 0.5 * np.log(variance), np.nan)
    return log_value, log_vol


def standardised_window(window: np.ndarray, weights: np.ndarray, min_periods: int, shrinkage: float = 0.0):
    """[W, N] returns (NaN = missing) -> (xs [W, N], ok [N]) with xs^T xs = the correlation matrix
    (shrunk by ``shrinkage``): columns centred on their weighted mean, missing days at 0, scaled to
    unit norm; stocks with fewer than ``min_periods`` returns get an all-zero column."""
    return _standardised(window, weights, min_periods, shrinkage, (slice(None),))[0]


def _standardised(window: np.ndarray, weights: np.ndarray, min_periods: int, shrinkage: float, rows: tuple[slice, ...]):
    """``standardised_window`` of several row ranges of one window (each ``len(weights)`` long),
    e.g. the window of date t and the one a day earlier from W + 1 rows: the missing-value masks
    are made once."""
    x = torch.as_tensor(np.array(window, dtype=np.float64))
    w = torch.as_tensor(weights, dtype=torch.float64)
    valid = ~torch.isnan(x)
    filled, counted = torch.where(valid, x, 0.0), valid.to(torch.float64)
    equal = bool((w == 1.0).all())  # pearson: the weights' square roots are 1, their product a copy
    out = []
    for r in rows:
        ok = valid[r].sum(0) >= min_periods  # (N,)
        mean = (w @ filled[r]) / (w @ counted[r]).clamp_min(1e-300)  # (N,)
        xw = torch.where(valid[r], x[r] - mean, 0.0)  # (W, N)
        if not equal:
            xw *= w.sqrt()[:, None]
        norm = xw.norm(dim=0)  # (N,)
        ok &= norm > 0
        scale = torch.where(ok, (1.0 - shrinkage) ** 0.5 / norm.clamp_min(1e-300), 0.0)
        out.append((xw.mul_(scale), ok))
    return out


def correlation_matrix(window: np.ndarray, weights: np.ndarray, min_periods: int, shrinkage: float = 0.0):
    """[W, N] returns -> (rho [N, N] with 0 on the diagonal and for short-history stocks, ok [N])."""
    xs, ok = standardised_window(window, weights, min_periods, shrinkage)
    rho = xs.t() @ xs  # (N, N): the one matrix product
    rho.fill_diagonal_(0.0)
    return rho, ok


def row_topk(values: torch.Tensor, k: int, chunk: int = 8, hint: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of each row of ``values [B, n]`` (a contiguous CPU tensor), largest
    first: the same set as ``torch.topk`` (up to ties), about 1.7x cheaper on a CPU for n >> k (one
    block of 256 x 3,678 with k = 21, one thread: 2.0 ms against 3.4 for ``torch.topk``; measured).

    The columns are cut into n // chunk strided chunks (chunk c holds columns c, c + n // chunk, ...,
    read by one vectorised max over the middle axis) plus a short tail. Only the k chunks with the
    largest maxima (and the tail) can hold a top-k entry: an entry of any other chunk is at most its
    chunk's maximum, which is at most each of those k maxima, k distinct entries of the kept chunks.
    So the top-k of the kept chunks' entries is the top-k of the row, and every entry left out is at
    most the k-th value returned. Both selections are numpy's introselect (``argpartition``), which
    costs about half of ``torch.topk`` on these short rows; only the k winners are sorted.

    ``hint [B, h]`` (h >= k columns per row, -1 where unknown), e.g. each row's top columns of the
    day before, where a correlation window moved by one day changes little: a row whose hinted
    columns are all known takes ``tau``, the k-th largest of its values there. k entries of the row
    reach ``tau`` (k distinct columns; a row with fewer above it, a repeating hint, is not hinted),
    so every top-k entry does too, and the row's top-k is that of its entries >= tau
    (about 35 a row at k = 24 on the full market, against the 190 the chunks keep): one compare and
    one ``flatnonzero`` over the block, then one sort of the few survivors (1.4 against 2.4 ms a
    block; measured). Its other rows, and rows whose ``tau`` is not positive (the values are |scores|
    and the row's own entry is -1), go the chunk way.
    """
    if hint is None or values.dtype != torch.float32:
        return _chunk_topk(values, k, chunk)
    v = values.numpy()
    b, n = v.shape
    h = hint.shape[1]
    tau = np.partition(np.take_along_axis(v, np.maximum(hint, 0), 1), h - k, axis=1)[:, h - k]
    hinted = (hint >= 0).all(1) & (tau > 0)
    flat = np.flatnonzero(v >= np.where(hinted, tau, np.inf)[:, None])  # by row, then column
    row = flat // n
    found = v.reshape(-1)[flat]
    # one sort by (row, value descending): the bits of a non-negative float32 order as its value
    order = np.argsort((row.astype(np.int64) << 32) | (0x7FFFFFFF - found.view(np.int32).astype(np.int64)))  # ties: any order
    counts = np.bincount(row, minlength=b)
    hinted &= counts >= k  # fewer only if the hint repeats a column
    pick = order[(np.cumsum(counts) - counts)[hinted, None] + np.arange(k)]
    top, index = np.empty((b, k), dtype=v.dtype), np.empty((b, k), dtype=np.int64)
    top[hinted], index[hinted] = found[pick], flat[pick] - row[pick] * n
    if not hinted.all():
        rest = ~hinted
        rest_top, rest_index = _chunk_topk(values[torch.from_numpy(rest)], k, chunk)
        top[rest], index[rest] = rest_top.numpy(), rest_index.numpy()
    return torch.from_numpy(top), torch.from_numpy(index)


def _chunk_topk(values: torch.Tensor, k: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``row_topk`` by strided chunks (its docstring)."""
    b, n = values.shape
    c = n // chunk
    if c < 2 * k:  # short rows: nothing to prune
        return torch.topk(values, k, dim=1)
    maxima = values[:, : c * chunk].view(b, chunk, c).amax(1).numpy()  # (B, c)
    best = np.argpartition(maxima, c - k, axis=1)[:, c - k :]  # (B, k) chunks, any order
    cols = (best[:, :, None] + c * np.arange(chunk)).reshape(b, k * chunk)
    cols = np.concatenate([cols, np.broadcast_to(np.arange(c * chunk, n), (b, n - c * chunk))], axis=1)
    candidates = values.numpy().reshape(-1)[cols + n * np.arange(b)[:, None]]  # flat indices: cheaper than take_along_axis
    pick = np.argpartition(candidates, candidates.shape[1] - k, axis=1)[:, -k:]  # the k largest, any order
    top = np.take_along_axis(candidates, pick, 1)
    order = np.argsort(-top, axis=1, kind="stable")
    index = np.take_along_axis(np.take_along_axis(cols, pick, 1), order, 1)
    return torch.from_numpy(np.take_along_axis(top, order, 1)), torch.from_numpy(index)


def _ranked(columns: torch.Tensor, rho: torch.Tensor, rows: torch.Tensor, ok: torch.Tensor, k: int, threshold: float):
    """Candidate ``columns [R, C]`` of ``rows`` with their float64 scores ``rho [R, C]`` -> the first
    k by |rho| descending, ties to the lower column (as the plain reference sorts), never the row
    itself, below the threshold or short-history stocks left out -> (neighbors [R, k], rho [R, k])."""
    itself = columns == rows[:, None]
    rho = torch.where(itself, 0.0, rho)
    score = torch.where(itself, -1.0, rho.abs())
    columns, by_column = columns.sort(dim=1)  # by column, then stably by |rho|
    order = torch.sort(torch.gather(score, 1, by_column), dim=1, descending=True, stable=True).indices[:, :k]
    index, value = torch.gather(columns, 1, order), torch.gather(torch.gather(rho, 1, by_column), 1, order)
    keep = (value.abs() >= threshold) & (value != 0) & ok[rows, None] & ok[index]
    return torch.where(keep, index, -1), torch.where(keep, value, 0.0)


def _exact_rows(xs: torch.Tensor, other: torch.Tensor, rows: torch.Tensor, ok: torch.Tensor, k: int, threshold: float):
    """The float64 top-k of ``rows`` over every column -> (neighbors [len(rows), k], rho [len(rows), k])."""
    rho = xs[:, rows].t() @ other  # (R, N)
    n, at = rho.shape[1], (torch.arange(len(rows)), rows)
    score = rho.abs()
    score[at] = -1.0  # never oneself
    kk = min(k, n - 1)
    neighbors = torch.full((len(rows), k), -1, dtype=torch.int64)
    slot_rho = torch.zeros((len(rows), k), dtype=rho.dtype)
    if kk <= 0:  # a cross-section of one stock
        return neighbors, slot_rho
    value, index = torch.topk(score, min(kk + 1, n), dim=1)  # one more, to see a tie at the cut
    if value.shape[1] > kk and (tie := value[:, kk - 1] == value[:, kk]).any():
        index[tie] = torch.sort(score[tie], dim=1, descending=True, stable=True).indices[:, : kk + 1]
    neighbors[:, :kk], slot_rho[:, :kk] = _ranked(index, torch.gather(rho, 1, index), rows, ok, kk, threshold)
    return neighbors, slot_rho


def _settle_rows(xs: torch.Tensor, other: torch.Tensor, rows: torch.Tensor, candidates: torch.Tensor, ok: torch.Tensor, k: int, threshold: float):
    """``_exact_rows`` for rows whose float64 top-k is known to lie among ``candidates [R, C]``
    (C >= k columns per row): only those R x C scores are recomputed in float64. The candidates'
    windows are rows of a transposed copy, gathered by ``index_select`` (about 2-5x cheaper than
    indexing ``other.t()``; the same tensor)."""
    windows = torch.index_select(other.t().contiguous(), 0, candidates.reshape(-1)).view(*candidates.shape, -1)  # (R, C, W)
    rho = torch.bmm(windows, xs.t()[rows][:, :, None])[..., 0]  # (R, C) float64
    return _ranked(candidates, rho, rows, ok, k, threshold)


def knn_graph(xs: torch.Tensor, ok: torch.Tensor, k: int, threshold: float, ys: torch.Tensor | None = None, **options):
    """Top-k neighbours from standardised returns -> (neighbors [N, k], slot_rho [N, k]): see ``_knn``
    (``options``: its ``block_rows``, ``spare``, ``screen``)."""
    return _knn(xs, ok, k, threshold, ys, **options)[:2]


def _bfloat16_in_hardware() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in its AMX tiles, where a bfloat16 product runs
    about 6x float32's (a [256, 250] x [250, 3,700] block: 0.5 against 3.3 ms on one thread;
    measured); elsewhere torch converts and the screen would cost more than it saves."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch's own check, private
    return bool(probe is not None and probe())


BFLOAT16_SCREEN = _bfloat16_in_hardware()
BFLOAT16_UNIT = 2.0**-8  # bfloat16's unit roundoff (8 significant bits, round to nearest)


def _knn(
    xs: torch.Tensor,
    ok: torch.Tensor,
    k: int,
    threshold: float,
    ys: torch.Tensor | None = None,
    block_rows: int = 256,
    spare: int = 4,
    hint: np.ndarray | None = None,
    scratch: torch.Tensor | None = None,
    screen: bool | None = None,
):
    """Top-k neighbours from standardised returns ``xs [W, N]`` (float64), fast and exact. With
    ``ys`` (the window one day earlier, standardised alike) the score is ``xs^T (xs + ys)``:
    rho plus the lead-lag correlation.

    The N x N product runs in float32, one block of rows at a time, and ``row_topk`` keeps each
    row's k + ``spare`` largest |score|. Without ``ys`` the scores are symmetric, so a block computes
    only its columns from its diagonal on and copies them, transposed, below it: the next blocks find
    their left part written (half the multiply-adds, an N x N float32 buffer). Entry (j, i) may then
    differ from what row j's own product gives in the last bit (the full market: at most 3e-7), but
    the bound below holds for either, so the neighbours stay exact. A float32 dot product of W terms is
    within ``eps = (W + 3) 2^-24 |x| |y|`` of the exact one (the standard bound; columns have norm
    <= 1, or <= 2 with ``ys``), so a row whose first k scores are more than 2 eps apart from each
    other and from the next, and more than eps from the threshold, has exactly the float64
    neighbours in the float64 order. The rows that are not that clear-cut (near-ties, scores at the
    threshold: about 7% of the rows of the full market) are settled in float64 among their kept
    columns: with v the k-th float32 score, every float64 top-k column has a float32 score of at
    least v - 2 eps (k columns score at least v - eps in float64), so when the last kept score is
    below v - 2 eps the kept columns hold the answer. Rows with more near-ties than that are
    recomputed whole. Edge values of the clear rows are the float32 scores (within eps of the
    float64 ones; the store keeps float32).

    ``hint [N, k + spare]``: each row's kept columns of a nearby date (-1 unknown), which
    ``row_topk`` uses to skip most of each row; the result does not depend on it. Returns
    (neighbors [N, k], slot_rho [N, k], kept [N, k + spare] or None), ``kept`` being this date's
    kept columns, the next date's hint. ``scratch``: a float32 tensor of at least N x N elements
    that the symmetric scores are written into (the caller keeps one for many dates: a fresh N x N
    buffer a date cost about 14 ms of page faults at the full size, more than half of what the half
    product saves, where the allocator hands such blocks back to the system; measured).

    ``screen`` (default: where the CPU has bfloat16 tiles, ``BFLOAT16_SCREEN``): the N x N product
    runs in bfloat16 instead, only to find each row's candidates, and the float32 scores above are
    computed for those alone (``_screened``); the same neighbours and the same error bound on the
    edge values.
    """
    w, n = xs.shape
    other = xs if ys is None else xs + ys  # (W, N): score = xs^T other
    if k + 1 > n - 1 or torch.get_float32_matmul_precision() != "highest":  # all of it in float64
        return (*_exact_rows(xs, other, torch.arange(n), ok, k, threshold), None)
    kept = min(k + spare, n - 1)
    if hint is not None:  # kept columns a row, or none (a date of fewer stocks)
        hint = hint[:, :kept] if hint.shape[1] >= kept else None
    candidates = None
    screened = BFLOAT16_SCREEN if screen is None else screen
    if screened:
        xt = xs.t().contiguous()  # (N, W) float64: one stock's window a row, for every product below
        ot = xt if ys is None else other.t().contiguous()
        xs, other = xt.t(), ot.t()  # the same numbers; ``_settle_rows`` reads them transposed
    norms = float(xs.norm(dim=0).max()) * float(other.norm(dim=0).max())  # the largest column norms, for both bounds
    if screened:
        top, index, value, candidates = _screened(xt, ot, ok, k, kept, threshold, block_rows, hint, scratch, norms)
    else:
        top, index, value = _float32_scores(xs, other, k, kept, block_rows, hint, scratch)
    eps = (w + 3) * 2.0**-24 * norms
    level, top = max(threshold, 0.0), top.double()
    pair_ok = ok[:, None] & ok[index[:, :k]]
    take = (top[:, :k] > level + eps) & pair_ok
    unclear = (take & (top[:, :k] - top[:, 1 : k + 1] <= 2 * eps)).any(1) | (((top[:, :k] - level).abs() <= eps) & pair_ok).any(1)
    neighbors = torch.where(take, index[:, :k], -1)
    slot_rho = torch.where(take, value.double(), 0.0)
    if unclear.any():
        rows = torch.nonzero(unclear)[:, 0]
        if candidates is not None:  # each row's candidates hold its float64 top-k (``_screened``)
            least = torch.clamp_min(top[rows, k - 1] - 2 * eps, level - eps)
            neighbors[rows], slot_rho[rows] = _settle_candidates(xs, other, rows, least, *candidates, ok, k, threshold)
        else:
            whole = top[rows, -1] >= top[rows, k - 1] - 2 * eps if kept < n - 1 else torch.zeros(len(rows), dtype=torch.bool)
            if (~whole).any():
                part = rows[~whole]
                neighbors[part], slot_rho[part] = _settle_rows(xs, other, part, index[part], ok, k, threshold)
            if whole.any():
                neighbors[rows[whole]], slot_rho[rows[whole]] = _exact_rows(xs, other, rows[whole], ok, k, threshold)
    return neighbors, slot_rho, index[:, :kept]


def _float32_scores(xs, other, k: int, kept: int, block_rows: int, hint: np.ndarray | None, scratch: torch.Tensor | None):
    """``_knn``'s float32 way, every score of every row -> each row's ``kept`` largest |score|, largest
    first: (top [N, kept] the |scores|, index [N, kept] their columns, value [N, k] the first k signed)."""
    n = xs.shape[1]
    xt, o32 = xs.t().to(torch.float32).contiguous(), other.to(torch.float32)
    symmetric = other is xs  # xs^T xs: a block's scores left of its diagonal are the earlier blocks' above it
    if symmetric:  # every row
        score = scratch[: n * n].view(n, n) if scratch is not None and scratch.numel() >= n * n else torch.empty((n, n), dtype=torch.float32)
    else:  # one block's rows, reused by every block
        score = torch.empty((min(block_rows, n), n), dtype=torch.float32)
    size = torch.empty((min(block_rows, n), n), dtype=torch.float32)
    top = torch.empty((n, kept), dtype=torch.float32)
    index = torch.empty((n, kept), dtype=torch.int64)
    value = torch.empty((n, k), dtype=torch.float32)
    for a in range(0, n, block_rows):
        b = min(a + block_rows, n)
        if symmetric:  # half the product: the block's columns from its diagonal on, then mirrored below it
            block = score[a:b]
            torch.mm(xt[a:b], o32[:, a:], out=block[:, a:])
            score[b:, a:b] = block[:, b:].t()
        else:
            block = torch.mm(xt[a:b], o32, out=score[: b - a])  # (B, N) float32
        torch.abs(block, out=size[: b - a])
        size[torch.arange(b - a), torch.arange(a, b)] = -1.0  # never oneself
        top[a:b], index[a:b] = row_topk(size[: b - a], kept, hint=None if hint is None else hint[a:b])  # largest first
        value[a:b] = torch.gather(block, 1, index[a:b, :k])
    return top, index, value


def _screened(xt, ot, ok, k: int, kept: int, threshold: float, block_rows: int, hint: np.ndarray | None, scratch: torch.Tensor | None, norms: float):
    """``_knn``'s bfloat16 way, from ``xt = xs^T`` and ``ot = other^T`` ([N, W] float64), ``norms``
    the product of their largest row norms (``_knn`` has it for its own bound): the same
    (top, index, value) as ``_float32_scores`` but over each row's candidates, plus the candidates
    themselves (starts [N + 1], columns, |scores|: row i's are entries starts[i]:starts[i + 1], by
    float32 |score| descending). The bfloat16 scores go into ``scratch`` where it is large enough
    (one product for all rows: 4.7 against about 10 ms a full-size date in blocks of 256 rows).

    The N x N product runs in bfloat16 (inputs rounded to 8 significant bits, float32 sums, the
    result rounded to bfloat16): with u = 2^-8, |x|, |y| <= the largest column norms, the rounded
    inputs move a dot product by at most (2u + u^2) |x| |y| (Cauchy-Schwarz), the float32 sums by
    (W + 3) 2^-24 |x| |y| (1 + u)^2, the rounded result by u of itself: |bf - exact| <= a + b |bf|
    with a, b below (1% over). A row's candidates are its columns whose |bf| could belong to the
    exact top-k: with v the k-th largest |bf| over k distinct columns (the hinted ones, or the row's
    own top-k), those k columns score at least L = (1 - b) v - a exactly, so every exact top-k
    column does too, and its |bf| is at least tau = (1 - b) L - a. A column under the threshold is
    nobody's neighbour: tau is at least what a column at the threshold shows, (1 - b) threshold - a.
    A hint only makes the first pass cheaper: its v is at most the row's own k-th largest |bf|, and
    the columns it lets through hold that one, so v is raised to it and the candidates narrowed to
    what the row alone gives (whatever the hint, the same candidates, the same values). About 36
    candidates a row on the full market, against the 3,700 scores of a row. The candidates'
    float32 scores are sampled products (``torch.sparse.sampled_addmm``), within ``_knn``'s eps of
    the exact ones as before, and rank them; the exact top-k is among them, so ``_knn``'s clear rows
    hold as they are and its unclear ones are settled among the candidates (``_settle_candidates``).

    bfloat16 comparisons run on the bit patterns: for values >= 0 (|bf|, or -1 on the diagonal,
    negative as a pattern too) the int16 patterns order as the values; tau is truncated to
    bfloat16, which can only let more columns in."""
    n, w = xt.shape
    a_err, b_err = bfloat16_error(w, norms)
    at_threshold = (1 - b_err) * max(threshold, 0.0) - a_err
    xb = xt.to(torch.bfloat16)
    ob = xb if ot is xt else ot.to(torch.bfloat16)
    fits = scratch is not None and scratch.numel() * scratch.element_size() >= 2 * n * n
    size = scratch.view(torch.bfloat16)[: n * n].view(n, n) if fits else torch.empty((n, n), dtype=torch.bfloat16)
    torch.mm(xb, ob.t(), out=size).abs_()
    size.view(-1)[:: n + 1] = -1.0  # never oneself
    if hint is not None:  # a row's hint bounds it where it names k + spare distinct columns, itself not among them
        ordered = np.sort(hint, axis=1)
        hinted = (hint >= 0).all(1) & (ordered[:, 1:] != ordered[:, :-1]).all(1) & (hint != np.arange(n)[:, None]).all(1)
        hinted, hint = torch.from_numpy(hinted), torch.from_numpy(np.maximum(hint, 0))

    def tau_bits(v: torch.Tensor) -> torch.Tensor:
        """The bits of the least |bf| a row's exact top-k column can show, given v (above)."""
        tau = ((1 - b_err) * ((1 - b_err) * v - a_err) - a_err).clamp_min(at_threshold)
        return (tau.clamp_min(0).view(torch.int32) >> 16).to(torch.int16)  # truncated to bfloat16

    rows, cols, bits, v = [], [], [], torch.empty(n)
    for a in range(0, n, block_rows):
        b = min(a + block_rows, n)
        block, unbounded = size[a:b], torch.ones(b - a, dtype=torch.bool)
        if hint is not None:
            v[a:b] = torch.gather(block, 1, hint[a:b]).float().kthvalue(kept - k + 1, dim=1).values  # the k-th largest hinted
            unbounded = ~hinted[a:b]
        if unbounded.any():
            v[a:b][unbounded] = torch.topk(block[unbounded].float(), k, dim=1).values[:, -1]
        floor = torch.where(ok[a:b], tau_bits(v[a:b]), torch.iinfo(torch.int16).max)  # short histories: no neighbours
        patterns = block.view(torch.int16).numpy().reshape(-1)
        flat = np.flatnonzero(patterns >= np.repeat(floor.numpy(), n))  # by row, then column
        row = flat // n
        rows.append(row + a)
        cols.append(flat - row * n)
        bits.append(patterns[flat])
    rows, cols, bits = np.concatenate(rows), np.concatenate(cols), np.concatenate(bits)
    # a hinted row's v is at most its own k-th largest |bf|, which its candidates hold: raised to
    # that, the candidates are what the row alone gives, whatever the hint (and so are the values)
    counts = np.bincount(rows, minlength=n)
    full = counts >= k
    if full.any():
        by_bits = np.argsort((rows.astype(np.int64) << 16) | (0x7FFF - bits.astype(np.int64)))
        own = bits[by_bits[(np.cumsum(counts) - counts)[full] + k - 1]]  # each row's k-th largest |bf|, as bits
        v[torch.from_numpy(full)] = torch.from_numpy(own.astype(np.int32) << 16).view(torch.float32)
    keep = bits >= torch.where(ok, tau_bits(v), torch.iinfo(torch.int16).max).numpy()[rows]
    rows, cols = rows[keep], cols[keep]
    counts = np.bincount(rows, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)])
    if not len(cols):  # nobody has a neighbour (every history short)
        return torch.full((n, kept), -1.0), torch.arange(n)[:, None].expand(n, kept).clone(), torch.zeros((n, k)), (starts, cols, np.zeros(0))
    x32 = xt.to(torch.float32)
    score = _sampled_products(x32, x32 if ot is xt else ot.to(torch.float32), starts, cols).numpy()
    size = np.abs(score)
    # each row's candidates by |score| descending: one sort by (row, |score| descending); the bits of a
    # non-negative float32 order as its value
    order = np.argsort((rows.astype(np.int64) << 32) | (0x7FFFFFFF - size.view(np.int32).astype(np.int64)))
    have = np.arange(kept)[None, :] < counts[:, None]  # a row of fewer candidates is padded with itself at -1
    pick = order[np.where(have, starts[:-1, None] + np.arange(kept), 0)]
    top = torch.from_numpy(np.where(have, size[pick], -1.0).astype(np.float32))
    index = torch.from_numpy(np.where(have, cols[pick], np.arange(n)[:, None]))
    value = torch.from_numpy(np.where(have[:, :k], score[pick[:, :k]], 0.0).astype(np.float32))
    return top, index, value, (starts, cols[order], size[order])


def bfloat16_error(w: int, norms: float) -> tuple[float, float]:
    """(a, b): a bfloat16 product of two length-``w`` vectors whose norms multiply to at most
    ``norms`` (inputs rounded to bfloat16, float32 sums, the result rounded to bfloat16) is within
    a + b |result| of the exact dot product (``_screened``; 1% over the bound)."""
    u = BFLOAT16_UNIT
    return 1.01 * norms * (2 * u + u * u + (w + 3) * 2.0**-24 * (1 + u) ** 2) * (1 + u), 1.01 * u


def _sampled_products(a: torch.Tensor, b: torch.Tensor, starts: np.ndarray, cols: np.ndarray) -> torch.Tensor:
    """sum_w a[i, w] b[j, w] for row i's columns j = cols[starts[i]:starts[i + 1]] (each row's
    ascending), in that order: one sampled product over them as a CSR pattern."""
    n = len(starts) - 1
    pattern = torch.sparse_csr_tensor(torch.from_numpy(starts), torch.from_numpy(cols), torch.zeros(len(cols), dtype=a.dtype), (n, n), check_invariants=False)
    return torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0.0).values()


def _settle_candidates(xs, other, rows: torch.Tensor, least: torch.Tensor, starts, cols, size, ok, k: int, threshold: float):
    """``_settle_rows`` for ``rows`` over their candidates (``_screened``) whose float32 |score| is at
    least ``least`` (per row): each row's first ones, as they are sorted."""
    rows_np = rows.numpy()
    floor = np.full(len(starts) - 1, np.inf)
    floor[rows_np] = least.numpy()
    owner = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    count = np.bincount(owner[size >= floor[owner]], minlength=len(starts) - 1)[rows_np]  # a prefix of each row's
    slot = np.arange(max(int(count.max()), k))[None, :]
    first = np.minimum(starts[rows_np][:, None] + slot, len(cols) - 1)
    candidates = np.where(slot < count[:, None], cols[first], rows_np[:, None])  # padded with the row itself
    return _settle_rows(xs, other, rows, torch.from_numpy(candidates), ok, k, threshold)


def _lag_correlations(xs: torch.Tensor, ys: torch.Tensor, neighbors: torch.Tensor) -> torch.Tensor:
    """For each slot (i, k) with neighbour j: (sum_w xs[w, i] ys[w, j], sum_w ys[w, i] xs[w, j]),
    i.e. corr(i today, j a day earlier) and corr(i a day earlier, j today) -> [N, k, 2] float32; 0
    on padding. Only the edges' dot products, as two sampled products (``torch.sparse.sampled_addmm``
    over the edges as a CSR pattern): each reads the two stocks' windows where they lie instead of
    copying every neighbour's window out first (about 6 against 25 ms a full-size date on one
    thread; measured). Each dot product is one thread's loop over W in a fixed order: the same bits
    on any number of threads and in every process. In float32, as the edge attributes are stored: a
    float32 dot product of W terms of unit-norm columns is within (W + 3) 2^-24 of the exact one
    (the graph tests compare with the float64 reference at 1e-6)."""
    xt, yt = xs.t().to(torch.float32).contiguous(), ys.t().to(torch.float32).contiguous()  # (N, W): a stock's window is one row
    pattern, rows, slots = _edge_pattern(neighbors)
    out = torch.zeros((*neighbors.shape, 2), dtype=torch.float32)
    for side, (a, b) in enumerate(((xt, yt), (yt, xt))):  # sum_w a[i, w] b[j, w]
        out[rows, slots, side] = torch.sparse.sampled_addmm(pattern, a, b.t(), beta=0.0).values()
    return out


def _edge_pattern(neighbors: torch.Tensor, check_invariants: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``neighbors [N, k]`` (-1 = padding) -> (the edges as an N x N CSR pattern, each row's
    columns sorted, every value 0; and for the pattern's i-th edge its row and its slot)."""
    n, k = neighbors.shape
    columns, slots = torch.where(neighbors >= 0, neighbors.long(), n).sort(dim=1)  # each row by column, padding last
    kept = columns < n
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), kept.sum(1).cumsum(0)])
    pattern = torch.sparse_csr_tensor(crow, columns[kept], torch.zeros(int(kept.sum())), (n, n), check_invariants=check_invariants)
    return pattern, torch.arange(n)[:, None].expand(n, k)[kept], slots[kept]


def _slot_values(neighbors: np.ndarray, score: np.ndarray, lags: np.ndarray, log_value: np.ndarray, log_vol: np.ndarray) -> np.ndarray:
    """The per-edge numbers of one date that ``_reuse`` carries: [N, k, 5] = score, relative log
    traded value, relative log volatility, and the two lag correlations (0 on padding or unknown)."""
    valid = neighbors >= 0
    j = np.where(valid, neighbors, 0)

    def relative(x):
        return np.where(valid & np.isfinite(x[j]) & np.isfinite(x)[:, None], x[j] - x[:, None], 0.0)

    return np.concatenate([np.where(valid, score, 0.0)[..., None], relative(log_value)[..., None], relative(log_vol)[..., None], lags], axis=-1)


def _edge_attr(neighbors: np.ndarray, values: np.ndarray, sector: np.ndarray, market: np.ndarray) -> np.ndarray:
    """[N, k, len(EDGE_ATTRIBUTES)] from a date's slot values and its stocks' sector and market."""
    valid = neighbors >= 0
    j = np.where(valid, neighbors, 0)
    same_sector = (sector[j] == sector[:, None]) & valid
    same_market = (market[j] == market[:, None]) & valid
    later = np.zeros((*valid.shape, 1))  # neighbour_leads_long: filled by long_lead_correlations
    return np.concatenate([values[..., :1], same_sector[..., None], same_market[..., None], values[..., 1:], later], axis=-1).astype(np.float32)


def _reuse(prev_codes: np.ndarray, prev_nbrs: np.ndarray, prev_rho: np.ndarray, codes: np.ndarray):
    """Carry a graph built on an earlier date onto today's cross-section (same stocks by code;
    stocks new today have no neighbours, neighbours gone today are dropped, valid slots first).
    ``prev_rho`` [N, k, ...] holds each slot's values, carried with it."""
    k = prev_nbrs.shape[1]
    pos_prev = {c: i for i, c in enumerate(prev_codes)}
    rows = np.array([pos_prev.get(c, -1) for c in codes])
    today = np.full(len(prev_codes), -1)
    found = rows >= 0
    today[rows[found]] = np.flatnonzero(found)
    nbrs = np.full((len(codes), k), -1, dtype=np.int64)
    rho = np.zeros((len(codes), *prev_rho.shape[1:]))
    src = prev_nbrs[rows[found]]
    mapped = np.where(src >= 0, today[np.where(src >= 0, src, 0)], -1)
    order = np.argsort(mapped < 0, axis=1, kind="stable")
    nbrs[found] = np.take_along_axis(mapped, order, 1)
    extra = (1,) * (prev_rho.ndim - 2)  # the slot values' own axes
    kept = (nbrs[found] >= 0).reshape(*nbrs[found].shape, *extra)
    rho[found] = np.where(kept, np.take_along_axis(prev_rho[rows[found]], order.reshape(*order.shape, *extra), 1), 0.0)
    return nbrs, rho


def _carried_columns(prev_members: np.ndarray, prev_kept: np.ndarray, members: np.ndarray, width: int) -> np.ndarray:
    """An earlier date's kept columns of each of today's stocks (``members``: columns of the return
    grid, ``width`` of them), as columns of today's cross-section; -1 for a stock new today or a
    column gone since."""
    today, before = np.full(width, -1), np.full(width, -1)
    today[members], before[prev_members] = np.arange(len(members)), np.arange(len(prev_members))
    rows = before[members]
    return np.where((rows >= 0)[:, None], today[prev_members[prev_kept[np.maximum(rows, 0)]]], -1)


def long_lead_correlations(returns: np.ndarray, ends: np.ndarray, members: list, neighbors: np.ndarray, offsets: np.ndarray,
                           halflife: float, dates: np.ndarray | None = None, out: np.ndarray | None = None, block: int = 16) -> np.ndarray:  # fmt: skip
    """The ``neighbour_leads_long`` attribute (module docstring) of every edge: ``returns [D, S]``
    on the full calendar, date i's stocks ``members[i]`` (grid columns), its days before
    ``ends[i]``, its edges ``neighbors[offsets[i]:offsets[i + 1]]`` -> ``out`` [rows, k] (a new
    float32 array when None), 0 on padding; only the rows of ``dates`` (indices i; default all).

    One pass over the calendar up to the last of them: P[i, j] = sum_s l^(a-1-s) r_i[s] r_j[s-1]
    over all pairs, advanced ``block`` days at a time by one [S, block] x [block, S] product
    (float64), and each date's edges add their days since the block's start. S^2 memory (115 MB at
    3,800 stocks); about 2 S^2 flops a day. Runs over disjoint ``dates`` can share ``out``, one a
    thread (each makes its own pass)."""
    z = np.nan_to_num(np.asarray(returns, dtype=np.float64))
    lagged = np.vstack([np.zeros((1, z.shape[1])), z[:-1]])  # r[s - 1] beside r[s]
    width = z.shape[1]
    keep = 0.5 ** (1.0 / halflife)
    cross = torch.zeros((width, width), dtype=torch.float64)  # the sums up to ``anchor`` (exclusive)
    own, other = np.zeros(width), np.zeros(width)  # sum of l^. r[s]^2 and of l^. r[s-1]^2
    anchor = 0
    days_t = lagged_t = None  # the block's days, one row a stock: [S, <= block]
    out = np.zeros(neighbors.shape, dtype=np.float32) if out is None else out
    dates = np.arange(len(ends)) if dates is None else np.asarray(dates)
    for i in dates[np.argsort(ends[dates], kind="stable")]:
        end = int(np.clip(ends[i], 0, len(z)))
        while anchor + block <= end:  # move the block sums on to the block holding ``end``
            days = slice(anchor, anchor + block)
            weights = keep ** np.arange(block - 1, -1, -1.0)[:, None]  # l^(anchor + block - 1 - s)
            cross.addmm_(torch.from_numpy(z[days] * weights).t(), torch.from_numpy(lagged[days]), beta=keep**block)
            own = own * keep**block + (weights * z[days] ** 2).sum(0)
            other = other * keep**block + (weights * lagged[days] ** 2).sum(0)
            anchor, days_t = anchor + block, None
        if days_t is None:
            days_t, lagged_t = z[anchor : anchor + block].T.copy(), lagged[anchor : anchor + block].T.copy()
        rows = slice(offsets[i], offsets[i + 1])
        valid = neighbors[rows] >= 0
        if not valid.any():
            continue
        m = members[i]
        b = m[np.where(valid, neighbors[rows], 0)]  # [N, k] each slot's neighbour, a grid column
        n_days = end - anchor
        weights = keep ** np.arange(n_days - 1, -1, -1.0)  # the days since the block's start: l^(end - 1 - s)
        decay = keep**n_days
        mine = days_t[m, :n_days]  # [N, days]
        own_days = mine * weights
        near = lagged_t[b, :n_days]  # [N, k, days]
        numerator = decay * cross.view(-1)[torch.from_numpy((m[:, None] * width + b).ravel())].numpy().reshape(b.shape)
        numerator += (near @ own_days[:, :, None])[..., 0]
        denominator = np.sqrt((decay * own[m] + (own_days * mine).sum(1))[:, None] * (decay * other[b] + (near**2) @ weights))
        ok = valid & (denominator > 0)
        out[rows] = np.where(ok, numerator / np.where(ok, denominator, 1.0), 0.0)
    return out


def _window(returns: np.ndarray, end: int, length: int, members: np.ndarray) -> np.ndarray:
    """[length, len(members)] returns of the dates before ``end``, NaN-padded at the start."""
    window = returns[max(end - length, 0) : max(end, 0), members]
    if window.shape[0] < length:  # the first dates: pad with missing days
        window = np.vstack([np.full((length - window.shape[0], len(members)), np.nan), window])
    return window


def build_graphs(panel: pl.DataFrame, cfg: GraphConfig, dates=None, progress: bool = True) -> GraphSet:
    """A graph for every date of the panel (or of ``dates``)."""
    return build_graphs_from_grid(return_grid(panel), cfg, dates, progress)


@contextmanager
def _one_thread_per_date():
    """(a ``map``, how many at once): runs of dates built side by side, one torch thread each (as
    many at once as torch has threads): the per-date steps are short, and whole dates in parallel
    keep both cores busier than splitting each step between them. Torch's thread count is restored
    after."""
    threads = torch.get_num_threads()
    if threads <= 1:
        yield map, 1
        return
    with torch_threads(1), ThreadPoolExecutor(threads) as pool:
        yield pool.map, threads


def build_graphs_from_grid(grid: ReturnGrid, cfg: GraphConfig, dates=None, progress: bool = True) -> GraphSet:
    returns = graph_returns(grid, cfg.returns)
    log_value, log_vol = window_scales(grid, returns, cfg.window, cfg.lag)
    weights = cfg.weights()
    shrink = cfg.shrinkage if cfg.method == "ewm_shrunk" else 0.0
    screened = cfg.screened()
    wanted = grid.dates if dates is None else np.asarray(dates, dtype="datetime64[D]")
    positions = np.searchsorted(grid.dates, wanted)
    members = [np.flatnonzero(grid.present[d]) for d in positions]  # each date's stocks, in Code order
    ends = positions + 1 - cfg.lag
    offsets = np.concatenate([[0], np.cumsum([len(m) for m in members])]).astype(np.int64)
    neighbors = np.full((offsets[-1], cfg.k), -1, dtype=np.int32)
    edge_attr = np.zeros((offsets[-1], cfg.k, len(EDGE_ATTRIBUTES)), dtype=np.float32)

    def build(i: int, hint: np.ndarray | None, before: tuple | None, scratch: torch.Tensor | None):
        """Date i's graph from its own window -> (neighbors [N, k], slot values [N, k, 5], the kept
        columns that hint the next date or None, the standardised window (xs, ok)); ``hint``: the
        previous built date's kept columns, carried; ``before``: the standardised window a day
        earlier when the previous built date's is it (the day before, the same stocks), else None;
        ``scratch``: the run's buffer for the N x N scores (``_knn``)."""
        m = members[i]
        if before is None:
            today, yesterday = slice(1, None), slice(0, -1)  # the window of date i and the one a day earlier
            (xs, ok), (ys, ok_y) = _standardised(_window(returns, ends[i], cfg.window + 1, m), weights, cfg.min_periods, shrink, (today, yesterday))
        else:
            ((xs, ok),), (ys, ok_y) = _standardised(_window(returns, ends[i], cfg.window, m), weights, cfg.min_periods, shrink, (slice(None),)), before
        window = xs, ok  # as standardised: the next date's window a day earlier
        if cfg.lead_lag:  # a pair needs both stocks in both windows
            ok = ok & ok_y
            xs, ys = xs * ok, ys * ok
        if cfg.blend_window:  # the mean of two windows' correlations, xs^T xs / 2 + xl^T xl / 2: still one product
            xl, ok_l = standardised_window(_window(returns, ends[i], cfg.blend_window, m), cfg.weights(cfg.blend_window), cfg.min_periods, shrink)
            ok = ok & ok_l
            nbrs, rho, kept = _knn(torch.cat([xs, xl]) * ok * 0.5**0.5, ok, cfg.k, cfg.threshold, hint=hint, scratch=scratch, screen=screened)  # (W + W', N)
        else:
            nbrs, rho, kept = _knn(xs, ok, cfg.k, cfg.threshold, ys=ys if cfg.lead_lag else None, hint=hint, scratch=scratch, screen=screened)
        lags = _lag_correlations(xs, ys, nbrs)
        values = _slot_values(nbrs.numpy(), rho.numpy(), lags.numpy(), log_value[positions[i], m], log_vol[positions[i], m])
        return nbrs.numpy(), values, None if kept is None else kept.numpy(), window

    def chain(built: np.ndarray) -> None:
        """Build a run of consecutive dates in order, each hinted by the one before (and, a day
        apart with the same stocks, handed its standardised window), and write them (and the
        dates that reuse them) into their rows."""
        hint = before = None
        largest = max((len(members[i]) for i in built), default=0)
        scratch = None if cfg.lead_lag and not screened else torch.empty(largest * largest, dtype=torch.float32)  # every date's N x N scores
        for i, following in zip(built, [*built[1:], None]):
            nbrs, rho, kept, window = build(i, hint, before, scratch)
            hint = None if kept is None or following is None else _carried_columns(members[i], kept, members[following], len(grid.codes))
            next_day = following is not None and ends[following] == ends[i] + 1 and np.array_equal(members[following], members[i])
            before = window if next_day else None
            for j in range(i, min(i + cfg.rebuild_every, len(wanted))):  # date i, then the dates that reuse its graph
                if j > i:
                    nbrs_j, rho_j = _reuse(grid.codes[members[i]], nbrs, rho, grid.codes[members[j]])
                else:
                    nbrs_j, rho_j = nbrs, rho
                m, rows = members[j], slice(offsets[j], offsets[j + 1])
                neighbors[rows] = nbrs_j
                edge_attr[rows] = _edge_attr(nbrs_j, rho_j, grid.sector[m], grid.market[m])
                bar.update()

    def long_leads(dates: np.ndarray) -> None:
        long_lead_correlations(returns, ends, members, neighbors, offsets, cfg.lead_halflife, dates, edge_attr[..., EDGE_ATTRIBUTES.index("neighbour_leads_long")])

    rebuilt = np.arange(0, len(wanted), cfg.rebuild_every)
    with tqdm(total=len(wanted), desc="graphs", unit="date", disable=not progress) as bar, _one_thread_per_date() as (parallel_map, threads):
        list(parallel_map(chain, np.array_split(rebuilt, threads)))  # contiguous runs, one a thread
        list(parallel_map(long_leads, np.array_split(np.argsort(ends, kind="stable"), threads)))  # then the long lead-lag, as many passes
    return GraphSet(
        dates=wanted,
        offsets=offsets,
        codes=grid.codes[np.concatenate(members)] if members else np.array([], dtype=str),
        neighbors=neighbors,
        edge_attr=edge_attr,
        config={**asdict(cfg), "edge_attributes": list(EDGE_ATTRIBUTES)},
    )
