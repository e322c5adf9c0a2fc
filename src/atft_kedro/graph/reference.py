"""The plain per-date graph builder: pandas and Python loops, one stock at a time.

It implements the definition in ``correlation.py`` the obvious way and exists to check the
vectorised builder (tests) and to measure its speed-up (tests/benchmarks). Don't use it for work.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl

from atft_kedro.graph.correlation import GraphConfig


def prepare_returns(panel: pl.DataFrame) -> pd.DataFrame:
    """The panel as pandas with a daily return column (done once, outside the per-date builder)."""
    df = panel.select("Date", "Code", "close", "traded", "Sector33Code", "MarketCode").to_pandas()
    df["Date"] = pd.to_datetime(df["Date"])
    df = df.sort_values(["Code", "Date"])
    prev_close = df.groupby("Code")["close"].shift(1)
    prev_traded = df.groupby("Code")["traded"].shift(1).fillna(False).astype(bool)
    df["ret"] = np.where(df["traded"] & prev_traded, df["close"] / prev_close - 1, np.nan)
    df["relative_ret"] = df["ret"] - df.groupby("Date")["ret"].transform("mean")
    return df


def build_graph_reference(panel: pl.DataFrame | pd.DataFrame, date, cfg: GraphConfig):
    """-> (codes [N_t], neighbors [N_t, k], edge_attr [N_t, k, 3]) for one date. ``panel`` is the
    polars panel or the output of ``prepare_returns``."""
    df = prepare_returns(panel) if isinstance(panel, pl.DataFrame) else panel
    calendar = sorted(df["Date"].unique())
    t = calendar.index(pd.Timestamp(date))
    end = t + 1 - cfg.lag
    today = df[df["Date"] == pd.Timestamp(date)].sort_values("Code")
    codes = list(today["Code"])
    column = "ret" if cfg.returns == "raw" else "relative_ret"
    shrink = cfg.shrinkage if cfg.method == "ewm_shrunk" else 0.0

    def centred_window(end: int) -> dict:
        """code -> weighted, centred returns of the W dates before ``end`` (0 for missing or
        before the calendar), for the stocks with enough history."""
        window_dates = calendar[max(end - cfg.window, 0) : max(end, 0)]
        returns = df[df["Date"].isin(window_dates)].pivot(index="Date", columns="Code", values=column)
        returns = returns.reindex(index=window_dates, columns=codes)
        weights = pd.Series(cfg.weights()[cfg.window - len(window_dates) :], index=window_dates)
        centred = {}
        for code in codes:
            r = returns[code]
            ok = r.notna()
            if ok.sum() < cfg.min_periods:
                continue
            mean = (r[ok] * weights[ok]).sum() / weights[ok].sum()
            x = ((r - mean).fillna(0.0) * np.sqrt(weights)).to_numpy()
            centred[code] = np.concatenate([np.zeros(cfg.window - len(x)), x])  # day-aligned across windows
        return centred

    def corr(x, y) -> float:
        denom = np.sqrt((x @ x) * (y @ y))
        return (x @ y) / denom * (1 - shrink) if denom > 0 else 0.0

    centred, earlier = centred_window(end), None
    if cfg.lead_lag:  # the window one day earlier; a pair needs both stocks in both
        earlier = centred_window(end - 1)
        centred = {c: x for c, x in centred.items() if c in earlier}

    sector = dict(zip(today["Code"], today["Sector33Code"]))
    market = dict(zip(today["Code"], today["MarketCode"]))
    position = {c: i for i, c in enumerate(codes)}
    neighbors = np.full((len(codes), cfg.k), -1, dtype=np.int64)
    edge_attr = np.zeros((len(codes), cfg.k, 3), dtype=np.float32)
    for i, a in enumerate(codes):
        if a not in centred:
            continue
        candidates = []
        for b, xb in centred.items():
            if b == a:
                continue
            rho = corr(centred[a], xb) + (corr(centred[a], earlier[b]) if cfg.lead_lag else 0.0)
            if abs(rho) >= cfg.threshold:
                candidates.append((-abs(rho), position[b], b, rho))
        for slot, (_, j, b, rho) in enumerate(sorted(candidates)[: cfg.k]):
            neighbors[i, slot] = j
            edge_attr[i, slot] = (rho, sector[a] == sector[b], market[a] == market[b])
    return np.array(codes), neighbors, edge_attr
