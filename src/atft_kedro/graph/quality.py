"""How much of the synthetic market's planted lead-lag structure the graphs hold.

The simulator puts stocks in clusters (inside sectors, or across them with
``cross_sector_clusters``); followers move a day after their cluster's
leaders (``atft_kedro.data.synthetic``). The oracle table carries each stock's ``cluster`` and
``is_leader`` (never a model input), so the graphs can be scored against the truth they should
find: a follower gains from graph attention only through edges to its leaders. On real data there
is no such truth and nothing is scored.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from atft_kedro.features.splits import split_dates
from atft_kedro.graph.store import GraphSet

ROW_BLOCK = 1 << 20  # graph rows scored at a time: the arrays may be memory maps of a big market


TOP = 3  # leader_precision looks at each follower's first TOP neighbours (the graph's strongest)


def planted_structure_recall(graphs: GraphSet, oracle: pl.DataFrame, splits: pl.DataFrame, top: int = TOP) -> dict:
    """-> {split: {"dates", "mate_recall", "mate_precision", "leader_precision",
    "leader_precision_chance", "followers_with_a_leader"}} over the graphs of each split's dates; {}
    without planted clusters.

    mate_recall: the mean over stocks (with a cluster mate that date) of the share of their cluster
    mates that are among their neighbours; mate_precision: the share of edges that join two cluster
    mates; leader_precision: of the first ``top`` neighbours of every follower (the graph's
    strongest), the share that are one of its leaders; leader_precision_chance: the same share for
    neighbours drawn at random from the date's other stocks (its leaders present over N_t - 1);
    followers_with_a_leader: the share of followers with at least one leader among all neighbours.
    """
    if oracle.is_empty() or "cluster" not in oracle.columns or oracle["cluster"].null_count() == oracle.height:
        return {}
    codes = np.asarray(graphs.codes).astype(str)
    node_cluster, node_leader = planted_clusters(oracle, codes)  # per graph row
    offsets = np.asarray(graphs.offsets)
    row_date = np.repeat(np.asarray(graphs.dates), np.diff(offsets))  # (rows,)
    row_start = np.repeat(offsets[:-1], np.diff(offsets))  # each row's date's first row
    n_rows, k = len(codes), graphs.neighbors.shape[1]
    valid, mate, leads = (np.zeros((n_rows, k), dtype=bool) for _ in range(3))
    for lo in range(0, n_rows, ROW_BLOCK):
        hi = min(lo + ROW_BLOCK, n_rows)
        nbrs = np.asarray(graphs.neighbors[lo:hi])  # (rows, k), local to each date
        valid[lo:hi] = nbrs >= 0
        target = np.where(valid[lo:hi], nbrs + row_start[lo:hi, None], 0)  # global rows
        mate[lo:hi] = valid[lo:hi] & (node_cluster[target] == node_cluster[lo:hi, None])
        leads[lo:hi] = mate[lo:hi] & node_leader[target]
    mates_present, leaders_present, others = (np.zeros(n_rows) for _ in range(3))
    for lo, hi in graphs.date_rows():  # per date: each stock's cluster mates and leaders in the cross-section
        c = node_cluster[lo:hi]
        _, inverse, count = np.unique(c, return_inverse=True, return_counts=True)
        leaders = np.bincount(inverse, weights=node_leader[lo:hi].astype(float))
        mates_present[lo:hi] = count[inverse] - 1
        leaders_present[lo:hi] = leaders[inverse] - node_leader[lo:hi]
        others[lo:hi] = hi - lo - 1
    follower = ~node_leader
    first = valid[:, :top]

    out = {}
    for name in ("train", "val", "test"):
        dates = split_dates(splits, name, fold=None).to_numpy().astype("datetime64[D]")
        rows = np.isin(row_date, dates)
        if not rows.any():
            continue
        with_mates = rows & (mates_present > 0)
        f = rows & follower & (leaders_present > 0)
        out[name] = {
            "dates": int(np.isin(np.asarray(graphs.dates), dates).sum()),
            "mate_recall": float((mate[with_mates].sum(1) / mates_present[with_mates]).mean()) if with_mates.any() else 0.0,
            "mate_precision": float(mate[rows].sum() / max(valid[rows].sum(), 1)),
            "leader_precision": float(leads[f, :top].sum() / max(first[f].sum(), 1)),
            "leader_precision_chance": float((leaders_present[f] / np.maximum(others[f], 1)).mean()) if f.any() else 0.0,
            "followers_with_a_leader": float(leads[f].any(1).mean()) if f.any() else 0.0,
        }
    return out


def planted_clusters(oracle: pl.DataFrame, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (cluster, is_leader) of each of ``codes``, from the oracle table; a code it lacks is an error."""
    truth = oracle.group_by("Code").agg(pl.col("cluster").first(), pl.col("is_leader").first()).sort("Code")
    known = truth["Code"].to_numpy().astype(str)
    pos = np.clip(np.searchsorted(known, codes), 0, len(known) - 1)
    if not (known[pos] == codes).all():
        raise ValueError("the graphs hold stocks that the oracle table does not: were they built on another market?")
    return truth["cluster"].to_numpy()[pos], truth["is_leader"].to_numpy()[pos]


def true_leader_neighbours(cluster: np.ndarray, leader: np.ndarray, k: int) -> np.ndarray:
    """One date's stocks (their planted ``cluster`` and ``is_leader``, in row order) -> [n, k] the
    leaders of each stock's own cluster, in row order, itself excluded, -1 padded: the graph that
    would hold all of the planted lead-lag. A diagnostic of the simulator's truth, never a model input."""
    n = len(cluster)
    same = (cluster[:, None] == cluster[None, :]) & leader[None, :] & ~np.eye(n, dtype=bool)
    order = np.argsort(~same, axis=1, kind="stable")[:, :k]
    return np.where(np.take_along_axis(same, order, 1), order, -1)
