"""graph_construction nodes."""

from __future__ import annotations

import logging
import time

import numpy as np
import polars as pl

from atft_kedro.graph.correlation import GraphConfig, build_graphs
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
