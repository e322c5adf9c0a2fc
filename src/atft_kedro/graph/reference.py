"""The plain per-date graph builder: pandas and Python loops, one stock at a time.

It implements the definition in ``correlation.py`` the obvious way and exists to check the
vectorised builder (tests) and to measure its speed-up (tests/benchmarks). Don't use it for work.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl

from atft_kedro.graph.correlation import EDGE_ATTRIBUTES, GraphConfig


def prepare_returns(panel: pl.DataFrame) -> pd.DataFrame:
    """The panel as pandas with a daily return column (done once, outside the per-date builder)."""
    df = panel.select("Date", "Code", "close", "turnover", "traded", "Sector33Code", "MarketCode").to_pandas()
    df["Date"] = pd.to_datetime(df["Date"])
    df = df.sort_values(["Code", "Date"])
    prev_close = df.groupby("Code")["close"].shift(1)
    prev_traded = df.groupby("Code")["traded"].shift(1).fillna(False).astype(bool)
    df["ret"] = np.where(df["traded"] & prev_traded, df["close"] / prev_close - 1, np.nan)
    df["value"] = np.where(df["traded"], df["turnover"], np.nan)
    df["relative_ret"] = df["ret"] - df.groupby("Date")["ret"].transform("mean")
    sector = df.groupby("Code")["Sector33Code"].transform("last")  # a stock's sector: its last one, as the grid's
    df["sector_relative_ret"] = df["ret"] - df.groupby([df["Date"], sector])["ret"].transform("mean")
    return df


def build_graph_reference(panel: pl.DataFrame | pd.DataFrame, date, cfg: GraphConfig):
    """-> (codes [N_t], neighbors [N_t, k], edge_attr [N_t, k, len(EDGE_ATTRIBUTES)]) for one date.
    ``panel`` is the polars panel or the output of ``prepare_returns``."""
    df = prepare_returns(panel) if isinstance(panel, pl.DataFrame) else panel
    calendar = sorted(df["Date"].unique())
    t = calendar.index(pd.Timestamp(date))
    end = t + 1 - cfg.lag
    today = df[(df["Date"] == pd.Timestamp(date)) & df["traded"]].sort_values("Code")  # the date's nodes: the stocks that traded on it
    codes = list(today["Code"])
    column = {"raw": "ret", "relative": "relative_ret", "sector_relative": "sector_relative_ret"}[cfg.returns]
    shrink = cfg.shrinkage if cfg.method == "ewm_shrunk" else 0.0

    def centred_window(end: int, length: int = cfg.window) -> dict:
        """code -> weighted, centred returns of the ``length`` dates before ``end`` (0 for missing
        or before the calendar), for the stocks with enough history."""
        window_dates = calendar[max(end - length, 0) : max(end, 0)]
        returns = df[df["Date"].isin(window_dates)].pivot(index="Date", columns="Code", values=column)
        returns = returns.reindex(index=window_dates, columns=codes)
        weights = pd.Series(cfg.weights(length)[length - len(window_dates) :], index=window_dates)
        centred = {}
        for code in codes:
            r = returns[code]
            ok = r.notna()
            if ok.sum() < cfg.min_periods:
                continue
            mean = (r[ok] * weights[ok]).sum() / weights[ok].sum()
            x = ((r - mean).fillna(0.0) * np.sqrt(weights)).to_numpy()
            centred[code] = np.concatenate([np.zeros(length - len(x)), x])  # day-aligned across windows
        return centred

    def corr(x, y) -> float:
        denom = np.sqrt((x @ x) * (y @ y))
        return (x @ y) / denom * (1 - shrink) if denom > 0 else 0.0

    centred, earlier = centred_window(end), centred_window(end - 1)
    if cfg.lead_lag:  # a pair needs both stocks in both windows
        centred = {c: x for c, x in centred.items() if c in earlier}
    longer = centred_window(end, cfg.blend_window) if cfg.blend_window else None
    if longer is not None:  # a pair needs both stocks in both windows
        centred = {c: x for c, x in centred.items() if c in longer}

    def score(a: str, b: str) -> float:
        if cfg.lead_lag:
            return corr(centred[a], centred[b]) + corr(centred[a], earlier[b])
        if longer is not None:
            return (corr(centred[a], centred[b]) + corr(longer[a], longer[b])) / 2
        return corr(centred[a], centred[b])

    full = centred_window(end)  # the unfiltered window (lag correlations do not need the other windows)

    def lag(a: str, b: str) -> float:
        """corr(a on day s, b on day s - 1) over the window; 0 when either lacks the history."""
        return corr(full[a], earlier[b]) if a in full and b in earlier else 0.0

    history = df[df["Date"].isin(calendar[: max(end, 0)])].pivot(index="Date", columns="Code", values=column)
    history = history.reindex(index=calendar[: max(end, 0)], columns=codes).fillna(0.0).to_numpy()
    decay = 0.5 ** (np.arange(len(history))[::-1] / cfg.lead_halflife)  # day s: l^(end - 1 - s)

    def long_lead(a: str, b: str) -> float:
        """the exponentially weighted, uncentred corr(a on day s, b on day s - 1) over every day."""
        x, y = history[1:, position[a]], history[:-1, position[b]]
        num, den = (decay[1:] * x * y).sum(), np.sqrt((decay[1:] * x * x).sum() * (decay[1:] * y * y).sum())
        return num / den if den > 0 else 0.0

    window_dates = calendar[max(end - cfg.window, 0) : max(end, 0)]
    inside = df[df["Date"].isin(window_dates)].groupby("Code")
    log_value = np.log1p(inside["value"].mean())
    std = inside[column].std(ddof=0).where(inside[column].count() > 1)
    log_vol = np.log(std.where(std > 0))

    sector = dict(zip(today["Code"], today["Sector33Code"]))
    market = dict(zip(today["Code"], today["MarketCode"]))
    position = {c: i for i, c in enumerate(codes)}
    neighbors = np.full((len(codes), cfg.k), -1, dtype=np.int64)
    edge_attr = np.zeros((len(codes), cfg.k, len(EDGE_ATTRIBUTES)), dtype=np.float32)

    def relative(x: pd.Series, a: str, b: str) -> float:
        va, vb = x.get(a, np.nan), x.get(b, np.nan)
        return vb - va if np.isfinite(va) and np.isfinite(vb) else 0.0

    for i, a in enumerate(codes):
        if a not in centred:
            continue
        candidates = []
        for b in centred:
            if b == a:
                continue
            rho = score(a, b)
            if abs(rho) >= cfg.threshold:
                candidates.append((-abs(rho), position[b], b, rho))
        for slot, (_, j, b, rho) in enumerate(sorted(candidates)[: cfg.k]):
            neighbors[i, slot] = j
            edge_attr[i, slot] = (rho, sector[a] == sector[b], market[a] == market[b], relative(log_value, a, b),
                                  relative(log_vol, a, b), lag(a, b), lag(b, a), long_lead(a, b))  # fmt: skip
    return np.array(codes), neighbors, edge_attr
