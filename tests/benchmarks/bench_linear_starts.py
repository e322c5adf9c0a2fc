"""The linear paths' starts from per-date moments, against their fits on the stacked rows, in one run.

    python tests/benchmarks/bench_linear_starts.py --size full --dates 150               # the neighbour skip (phase 2)
    python tests/benchmarks/bench_linear_starts.py --path skip --size full --dates 0     # the linear skip (phase 0)

``--path neighbour``: builds the synthetic market through the pipelines' nodes and a phase-2
model (the project's settings, fixed initial weights), then fits the skip's start candidates on ``--dates`` training
dates two ways, alternating: ``start_neighbours_at_ridge``'s fits, from each date's products
summed (``neighbour_moments``), and the reference, the way they were made before: every row's
inputs and forecast stacked, each fit's design (``with_intercept``) made from them. Prints the
memory each holds above what it started with (numpy's allocations, traced by ``tracemalloc``: the
rows and designs are numpy arrays, the products torch tensors of a few hundred KB), the
reference's scaled to the whole training split's rows (it holds the rows, so it grows with them;
the moments hold one date's rows at a time), the seconds, and the largest difference between the
two ways' coefficients. Both pass over the same dates with the same model, so their forecasts
are the same; only how the fits are summed differs.

``--path skip``: a phase-0 model with the project's settings (its clips and rank targets), its
validation forecast made once and shared (it is the model's before the start, the same for
both), then the whole linear-skip start two ways, alternating: ``start_at_ridge`` (its fits from
per-date products, ``skip_moments``; each candidate's validation term winsorised a block of rows
at a time) and the reference, the code before: the training rows stacked, a design a fit, and the
validation rows winsorised once per clip. Prints the same memory and seconds, whether both kept
the same candidate, the largest difference between the two ways' weights and between their
candidates' validation scores.
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


def stacked_skip_start(model, arrays, train_idx, alpha: float, clips, validation, targets, long_alpha) -> dict:
    """The reference: the linear skip's start as it was made before (the code of 3035175), the
    training rows stacked (``training_rows``), a design a fit (``set_to_ridge``), the validation
    rows winsorised once per clip. -> each candidate's state and scores, and the one kept."""
    import copy
    import math

    from atft_kedro.training.data import HORIZON_KEYS
    from atft_kedro.training.predict import mean_rank_ics
    from atft_kedro.training.starts import UNCLIPPED, last_day_features, ranked_targets, set_to_ridge, training_rows

    x, y = training_rows(arrays, train_idx, model.target_scale.cpu().numpy())
    linear, horizons = model.linear, model.skip_horizons
    scored = [h for h in model.horizons if h in horizons]
    rows = last_day_features(validation, linear.in_features)
    model.skip_clip.fill_(math.inf)
    set_to_ridge(linear, horizons, x, y, long_alpha, only=[h for h in horizons if h not in scored])
    fitted_on = {"raw": y}
    if "rank" in targets:
        fitted_on["rank"] = ranked_targets(arrays, train_idx, y)
    starts, inputs, clip_of = {}, {}, {}
    clipped_rows = {c: rows if c == math.inf else np.clip(rows, -c, c) for c in (math.inf, *sorted(set(clips)))}
    for kind, yk in fitted_on.items():
        for c, read in clipped_rows.items():
            name = UNCLIPPED if c == math.inf else f"the ridge on the features winsorised at {c:g}"
            name += "" if kind == "raw" else ", fitted on each date's targets as ranks"
            set_to_ridge(linear, horizons, x, yk, alpha, only=scored, clip=c)
            starts[name], inputs[name], clip_of[name] = copy.deepcopy(linear.state_dict()), read, c
    base = validation.forecast(model)
    scale = dict(zip(HORIZON_KEYS, model.target_scale.double().cpu().numpy()))
    scores = {}
    for name, weights in starts.items():
        change = inputs[name] @ weights["weight"].double().numpy().T + weights["bias"].double().numpy()
        frame = base.with_columns(pl.Series(f"pred_{h}d", base[f"pred_{h}d"].to_numpy() + change[:, i] * scale[f"{h}d"])
                                  for i, h in enumerate(horizons) if f"pred_{h}d" in base.columns)  # fmt: skip
        scores[name] = mean_rank_ics(validation.by_date(frame))
    keys = [f"{h}d" for h in scored]
    mean = lambda name: float(np.nanmean([scores[name].get(k, math.nan) for k in keys]))  # noqa: E731
    return {"starts": starts, "scores": scores, "kept": max(starts, key=lambda n: (mean(n), n == UNCLIPPED))}


def moment_skip_start(model, arrays, train_idx, alpha: float, clips, validation, targets, long_alpha) -> dict:
    """The start as ``start_at_ridge`` makes it: from ``skip_moments``."""
    from atft_kedro.training.starts import start_at_ridge

    choice = start_at_ridge(model, arrays, train_idx, alpha, clips, validation, targets, long_alpha)
    return {"starts": choice.starts, "scores": choice.scores, "kept": choice.kept["1d"]}


def skip_main(args, data, params) -> None:
    """``--path skip``: the linear skip's start, both ways, alternating."""
    import dataclasses

    import torch

    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.pipelines.typed import typed
    from atft_kedro.training.config import TrainConfig
    from atft_kedro.training.data import DateDataset, build_arrays
    from atft_kedro.training.loop import build_model
    from atft_kedro.training.predict import predict, rank_ic_by_date
    from atft_kedro.training.starts import Validation

    splits = data["splits"]
    dates_of = lambda name: splits.filter(pl.col("split") == name)["Date"].to_numpy().astype("datetime64[D]")  # noqa: E731
    arrays = build_arrays(data["model_input"], data["market_context"], stock_feature_names(data["feature_manifest"]))
    split_idx, val_idx = (np.flatnonzero(np.isin(arrays.dates, dates_of(name))) for name in ("train", "val"))
    idx = split_idx if args.dates == 0 else split_idx[: args.dates]
    cfg = dataclasses.replace(typed(TrainConfig, params["training"]))
    torch.manual_seed(0)
    model = build_model(arrays, data["graphs"], cfg, 0, torch.device("cpu"))
    val_ds = DateDataset(arrays, data["graphs"], val_idx, cfg.window)
    base = predict(model, val_ds, cfg, torch.device("cpu"))  # the model's forecast before its start: the same for both ways
    horizons = [f"{h}d" for h in model.horizons]
    validation = Validation(val_ds, lambda m: base, lambda f: rank_ic_by_date(f, horizons, cfg.min_stocks))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    long_alpha = cfg.linear_ridge_alpha if cfg.long_ridge_alpha is None else cfg.long_ridge_alpha
    ways = {"stacked rows (reference)": stacked_skip_start, "per-date moments": moment_skip_start}
    peak, seconds, runs = measured(ways, lambda fit: (model.load_state_dict(fresh), fit(model, arrays, idx, cfg.linear_ridge_alpha,
                                   cfg.skip_clips, validation, cfg.skip_targets, long_alpha))[1], args.repeats)  # fmt: skip
    reference, moments = runs["stacked rows (reference)"], runs["per-date moments"]
    weight = lambda run, n: torch.cat([run["starts"][n]["weight"].flatten(), run["starts"][n]["bias"]]).double()  # noqa: E731
    scale = max(float(weight(reference, n).abs().max()) for n in reference["starts"])
    rows, split_rows = int(arrays.present[idx].sum()), int(arrays.present[split_idx].sum())
    print(json.dumps({
        "path": "skip", "size": args.size, "stocks": int(arrays.features.shape[1]), "train_dates": len(idx), "rows": rows,
        "validation_rows": len(base), "inputs": model.linear.in_features, "candidates": len(reference["starts"]), "threads": torch.get_num_threads(),
        "peak_mib_above_start": {k: [round(v / 2**20, 2) for v in vs] for k, vs in peak.items()},
        "split_rows": split_rows,
        "seconds": {k: [round(v, 2) for v in vs] for k, vs in seconds.items()},
        "memory_reference_over_moments": round(min(peak["stacked rows (reference)"]) / max(1, min(peak["per-date moments"])), 1),
        "same_kept": reference["kept"] == moments["kept"], "kept": moments["kept"],
        "largest_weight_difference_relative": max(float((weight(reference, n) - weight(moments, n)).abs().max()) for n in reference["starts"]) / scale,
        "largest_score_difference": max(abs(reference["scores"][n][k] - moments["scores"][n][k]) for n in reference["scores"] for k in horizons),
    }, indent=1))  # fmt: skip


def measured(ways: dict, run, repeats: int) -> tuple[dict, dict, dict]:
    """Each of ``ways`` (name -> a function) passed to ``run``, ``repeats`` times, who goes first
    alternating: per way the memory its run holds at its peak above what it started with (numpy's
    allocations, ``tracemalloc``), its seconds, and its last result."""
    peak, seconds, results = ({name: [] for name in ways} for _ in range(3))
    tracemalloc.start()
    for r in range(repeats):
        for name, fit in (ways.items() if r % 2 == 0 else reversed(ways.items())):
            tracemalloc.reset_peak()
            before, t = tracemalloc.get_traced_memory()[0], time.perf_counter()
            results[name] = run(fit)
            seconds[name].append(time.perf_counter() - t)
            peak[name].append(tracemalloc.get_traced_memory()[1] - before)
    tracemalloc.stop()
    return peak, seconds, results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--path", choices=("neighbour", "skip"), default="neighbour")
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
    if args.path == "skip":
        skip_main(args, data, params)
        return
    train_dates = data["splits"].filter(pl.col("split") == "train")["Date"].to_numpy().astype("datetime64[D]")
    arrays = build_arrays(data["model_input"], data["market_context"], stock_feature_names(data["feature_manifest"]))
    graphs = data["graphs"]
    split_idx = np.flatnonzero(np.isin(arrays.dates, train_dates))
    idx = split_idx if args.dates == 0 else split_idx[: args.dates]
    cfg = dataclasses.replace(typed(TrainConfig, params["training"]))
    torch.manual_seed(0)
    model = build_model(arrays, graphs, cfg, 2, torch.device("cpu"))
    ways = {"stacked rows (reference)": stacked_fits, "per-date moments": moment_fits}
    peak, seconds, fits = measured(ways, lambda fit: fit(model, arrays, graphs, idx, cfg.window, cfg.linear_ridge_alpha), args.repeats)
    rows = int(arrays.present[idx].sum())
    split_rows = int(arrays.present[split_idx].sum())
    reference, moments = fits["stacked rows (reference)"], fits["per-date moments"]
    scale = max(float(np.abs(c).max()) for c in reference.values())
    print(json.dumps({
        "path": "neighbour", "size": args.size, "stocks": int(arrays.features.shape[1]), "train_dates": len(idx), "rows": rows,
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
