"""The neighbour skip's start (phase 2) from per-date moments, against its fits on the stacked rows, in one run.

    python tests/benchmarks/bench_neighbour_start.py --size full --dates 150

Builds the synthetic market through the pipelines' nodes and a phase-2 model (the project's
settings, fixed initial weights), then fits the skip's start candidates on ``--dates`` training
dates two ways, alternating: ``start_neighbours_at_ridge``'s fits, from each date's products
summed (``neighbour_moments``), and the reference, the way they were made before: every row's
inputs and forecast stacked, each fit's design (``with_intercept``) made from them. Prints the
memory each holds above what it started with (numpy's allocations, traced by ``tracemalloc``: the
rows and designs are numpy arrays, the products torch tensors of a few hundred KB), the
reference's scaled to the whole training split's rows (it holds the rows, so it grows with them;
the moments hold one date's rows at a time), the seconds, and the largest difference between the
two ways' coefficients. Both pass over the same dates with the same model, so their forecasts
are the same; only how the fits are summed differs.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc

import numpy as np
import polars as pl


def stacked_fits(model, arrays, graphs, train_idx, window: int, alpha: float) -> dict:
    """The reference: the fits beside the forecast and of what it leaves (each also on the
    lead-weighted sum alone), from the training rows stacked and a design a fit."""
    import torch

    from atft_kedro.evaluation.baselines import solve_ridge_design, with_intercept
    from atft_kedro.training.data import HORIZON_KEYS, DateDataset
    from atft_kedro.training.starts import HORIZONS, neighbour_inputs, training_rows

    _, y = training_rows(arrays, train_idx, model.target_scale.numpy())
    x, forecast, filled = np.empty((len(y), model.neighbour.linear.in_features)), np.empty((len(y), len(HORIZON_KEYS))), 0
    model.eval()
    with torch.no_grad():
        for b, x_date in neighbour_inputs(model, DateDataset(arrays, graphs, train_idx, window)):
            out = model(b.x, b.market, b.date_of_node, b.neighbors, b.edge_attr)
            rows = slice(filled, filled + len(x_date))
            x[rows] = x_date
            forecast[rows] = np.stack([(out[h][:, 2] / s).double().numpy() if h in out else np.zeros(len(b.x))
                                       for h, s in zip(HORIZON_KEYS, model.target_scale)], 1)  # fmt: skip
            filled = rows.stop
    fits = {}
    for zeroed in (0, model.cfg.n_features):
        for h in model.neighbour_horizons:
            col = HORIZONS.index(h)
            ok = np.isfinite(y[:, col])
            fits[("beside", zeroed, h)] = solve_ridge_design(with_intercept(x, ok, extra=forecast[:, col : col + 1], zeroed=zeroed), y[ok, col], alpha)
            fits[("leaves", zeroed, h)] = solve_ridge_design(with_intercept(x, ok, zeroed=zeroed), y[ok, col] - forecast[ok, col], alpha)
    return fits


def moment_fits(model, arrays, graphs, train_idx, window: int, alpha: float) -> dict:
    """The same fits as ``start_neighbours_at_ridge`` makes them: from ``neighbour_moments``."""
    from atft_kedro.training.starts import neighbour_moments, ridge_of_moments

    moments = neighbour_moments(model, arrays, graphs, train_idx, window)
    return {(kind, zeroed, h): ridge_of_moments(moments[h], alpha, beside=kind == "beside", zeroed=zeroed)
            for zeroed in (0, model.cfg.n_features) for h in model.neighbour_horizons for kind in ("beside", "leaves")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="small")
    parser.add_argument("--dates", type=int, default=60, help="training dates fitted on (the full split: 0)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads for the forward passes (0: all, as the full-size runs train)")
    args = parser.parse_args()

    import dataclasses

    import torch

    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory
    from atft_kedro.pipelines.typed import typed
    from atft_kedro.training.config import TrainConfig
    from atft_kedro.training.data import build_arrays
    from atft_kedro.training.loop import build_model

    if args.threads:
        torch.set_num_threads(args.threads)
    params = project_parameters({"raw": {"synthetic_size": args.size}})
    data = run_in_memory(["data_engineering", "graph_construction"], params)
    train_dates = data["splits"].filter(pl.col("split") == "train")["Date"].to_numpy().astype("datetime64[D]")
    arrays = build_arrays(data["model_input"], data["market_context"], stock_feature_names(data["feature_manifest"]))
    graphs = data["graphs"]
    split_idx = np.flatnonzero(np.isin(arrays.dates, train_dates))
    idx = split_idx if args.dates == 0 else split_idx[: args.dates]
    cfg = dataclasses.replace(typed(TrainConfig, params["training"]))
    torch.manual_seed(0)
    model = build_model(arrays, graphs, cfg, 2, torch.device("cpu"))
    ways = {"stacked rows (reference)": stacked_fits, "per-date moments": moment_fits}
    peak, seconds, fits = ({name: [] for name in ways} for _ in range(3))
    tracemalloc.start()
    for r in range(args.repeats):
        for name, fit in (ways.items() if r % 2 == 0 else reversed(ways.items())):  # alternating who goes first
            tracemalloc.reset_peak()
            before, t = tracemalloc.get_traced_memory()[0], time.perf_counter()
            fits[name] = fit(model, arrays, graphs, idx, cfg.window, cfg.linear_ridge_alpha)
            seconds[name].append(time.perf_counter() - t)
            peak[name].append(tracemalloc.get_traced_memory()[1] - before)
    tracemalloc.stop()
    rows = int(arrays.present[idx].sum())
    split_rows = int(arrays.present[split_idx].sum())
    reference, moments = fits["stacked rows (reference)"], fits["per-date moments"]
    scale = max(float(np.abs(c).max()) for c in reference.values())
    print(json.dumps({
        "size": args.size, "stocks": int(arrays.features.shape[1]), "train_dates": len(idx), "rows": rows,
        "inputs": model.neighbour.linear.in_features, "threads": torch.get_num_threads(),
        "peak_mib_above_start": {k: [round(v / 2**20, 2) for v in vs] for k, vs in peak.items()},
        "split_rows": split_rows,
        "reference_gib_at_the_split_rows": round(min(peak["stacked rows (reference)"]) / rows * split_rows / 2**30, 2),
        "seconds": {k: [round(v, 2) for v in vs] for k, vs in seconds.items()},
        "memory_reference_over_moments": round(min(peak["stacked rows (reference)"]) / max(1, min(peak["per-date moments"])), 1),
        "largest_coefficient_difference_relative": float(max(np.abs(reference[k] - moments[k]).max() for k in reference) / scale),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
