"""Full-size graph_construction benchmark: the vectorised builder against the plain per-date one.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        python tests/benchmarks/bench_graph_construction.py --size full --reference-dates 2

Builds every date's graph of the synthetic market (default full: ~3,800 stocks x 1,200 dates) with
the project's graph parameters (conf/base; ``--graph`` overrides fields as JSON) and times the plain
reference (``atft_kedro.graph.reference``, pandas + a loop per stock) on a few of the
same dates. Each side's one-off preparation (the dense return grid; the pandas return table) is
timed separately and left out of the per-date comparison: the vectorised side's time per date is
its whole build (all dates, both threads) over the number of dates; the reference's, its time on
the sample dates. Same run; the two results are also checked to be equal on those dates.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="full")
    parser.add_argument("--reference-dates", type=int, default=2)
    parser.add_argument("--graph", default="{}", help="GraphConfig fields as JSON, over conf/base's")
    args = parser.parse_args()

    from atft_kedro.data.synthetic import SyntheticConfig, generate_market
    from atft_kedro.features.panel import build_panel
    from atft_kedro.graph.correlation import GraphConfig, build_graphs_from_grid, return_grid
    from atft_kedro.graph.reference import build_graph_reference, prepare_returns
    from atft_kedro.pipelines.in_memory import project_parameters

    market = generate_market(SyntheticConfig.sized(args.size))
    panel = build_panel(market.daily_quotes, market.listed_info)
    cfg = GraphConfig(**{**project_parameters()["graph"], **json.loads(args.graph)})

    start = time.perf_counter()
    grid = return_grid(panel)
    grid_seconds = time.perf_counter() - start
    graphs = build_graphs_from_grid(grid, cfg, progress=False)
    all_seconds = time.perf_counter() - start

    dates = graphs.dates
    sample = dates[np.linspace(len(dates) // 2, len(dates) - 1, args.reference_dates).astype(int)]
    fast = graphs  # the full build's graphs of the sample dates are compared with the reference's
    per_date = (all_seconds - grid_seconds) / len(dates)  # the full build's time per date, its one-off steps spread
    start = time.perf_counter()
    prepared = prepare_returns(panel)
    prepare_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reference = [build_graph_reference(prepared, d, cfg) for d in sample]
    ref_sample = time.perf_counter() - start
    equal = all(
        np.array_equal(fast.graph(d).neighbors.numpy(), nb) and np.allclose(fast.graph(d).edge_attr.numpy(), ea, atol=1e-6)
        for d, (_, nb, ea) in zip(sample, reference)
    )
    print(json.dumps({
        "size": args.size,
        "graph": {k: getattr(cfg, k) for k in ("returns", "window", "k", "blend_window", "lead_lag")},
        "dates": len(dates),
        "nodes": int(graphs.offsets[-1]),
        "all_dates_seconds": round(all_seconds, 2),
        "of_which_return_grid_seconds": round(grid_seconds, 2),
        "reference_preparation_seconds": round(prepare_seconds, 2),
        "dates_per_second": round(len(dates) / all_seconds, 1),
        "sample_dates": [str(d) for d in sample],
        "vectorised_seconds_per_date": round(per_date, 4),
        "reference_seconds_per_date": round(ref_sample / len(sample), 2),
        "speedup": round(ref_sample / len(sample) / per_date, 1),
        "reference_equal": bool(equal),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
