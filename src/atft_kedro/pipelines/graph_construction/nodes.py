"""graph_construction nodes."""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np
import polars as pl

from atft_kedro.graph.correlation import GraphConfig, build_graphs
from atft_kedro.graph.quality import planted_structure_recall
from atft_kedro.graph.store import GraphSet
from atft_kedro.pipelines.typed import typed

log = logging.getLogger(__name__)


def build_stock_graphs(panel: pl.DataFrame, params: GraphConfig, data_fingerprint: dict | None = None) -> GraphSet:
    cfg = typed(GraphConfig, params)
    start = time.perf_counter()
    graphs = dataclasses.replace(build_graphs(panel, cfg), data_fingerprint=data_fingerprint)
    degree = (np.asarray(graphs.neighbors) >= 0).sum(1)
    log.info(
        "%d graphs (%s, window %d, k %d) in %.1f s (candidates %s); mean degree %.1f, %.1f%% of nodes without neighbours",
        len(graphs), cfg.method, cfg.window, cfg.k, time.perf_counter() - start,
        "screened in bfloat16" if cfg.screened() else "from float32 products",
        degree.mean(), 100 * (degree == 0).mean(),
    )  # fmt: skip
    return graphs


def score_graphs(graphs: GraphSet, oracle_returns: pl.DataFrame, splits: pl.DataFrame) -> dict:
    """On the synthetic market: how much of the planted lead-lag the graphs hold (see graph.quality)."""
    scores = planted_structure_recall(graphs, oracle_returns, splits)
    if not scores:
        log.info("no planted structure to score the graphs against (real data)")
    for split, s in scores.items():
        log.info(
            "graphs vs planted clusters, %s (%d dates): %.0f%% of each stock's cluster mates are its "
            "neighbours, %.0f%% of edges join mates; %.0f%% of followers' first neighbours lead them "
            "(chance %.1f%%)",
            split, s["dates"], 100 * s["mate_recall"], 100 * s["mate_precision"], 100 * s["leader_precision"],
            100 * s["leader_precision_chance"],
        )  # fmt: skip
    return scores
