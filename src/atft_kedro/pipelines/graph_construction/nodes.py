"""graph_construction nodes."""

from __future__ import annotations

import logging
import time

import numpy as np
import polars as pl

from atft_kedro.graph.correlation import GraphConfig, build_graphs
from atft_kedro.graph.quality import planted_structure_recall
from atft_kedro.graph.store import GraphSet

log = logging.getLogger(__name__)


def build_stock_graphs(panel: pl.DataFrame, params: dict) -> GraphSet:
    cfg = GraphConfig(**params)
    start = time.perf_counter()
    graphs = build_graphs(panel, cfg)
    degree = (np.asarray(graphs.neighbors) >= 0).sum(1)
    log.info(
        "%d graphs (%s, window %d, k %d) in %.1f s; mean degree %.1f, %.1f%% of nodes without neighbours",
        len(graphs), cfg.method, cfg.window, cfg.k, time.perf_counter() - start, degree.mean(),
        100 * (degree == 0).mean(),
    )  # fmt: skip
    return graphs


def score_graphs(graphs: GraphSet, oracle_returns: pl.DataFrame, splits: pl.DataFrame) -> dict:
    """On the synthetic market: how much of the planted lead-lag the graphs hold (see graph.quality)."""
    scores = planted_structure_recall(graphs, oracle_returns, splits)
    if not scores:
        log.info("no planted structure to score the graphs against (real data)")
    for split, s in scores.items():
        log.info(
            "graphs vs planted clusters, %s (%d dates): %.1f%% of edges join cluster mates; %.1f%% of "
            "followers' edges point at their leaders; %.1f%% of followers have one",
            split, s["dates"], 100 * s["cluster_mate_share"], 100 * s["leader_share_of_follower_edges"],
            100 * s["followers_with_a_leader"],
        )  # fmt: skip
    return scores
