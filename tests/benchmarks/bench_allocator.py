"""Training with glibc keeping freed memory (``training.keep_freed_memory``) against without, in one run.

    python tests/benchmarks/bench_allocator.py --size full --dates 40

Run it without ``MALLOC_*_`` variables (the other benchmarks' settings): they are what the option
sets, and with them it leaves glibc alone. Builds the synthetic market through the pipelines'
nodes, then trains phase 2 (FAN, GAT, every horizon) for one epoch of ``--dates`` training dates
(the project's training settings, its linear paths started at zero) from the same initial
weights, the two settings alternating, and prints each epoch's seconds and
the process's minor page faults during it, the ratios, and whether both trained the same weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from bench_training import _phase1_start  # beside this script, on its path when run as the docstring says


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="small")
    parser.add_argument("--dates", type=int, default=40, help="training dates in the epoch")
    parser.add_argument("--threads", type=int, default=0, help="safe mode's torch threads (0: all, as the full-size runs train)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from atft_kedro.allocator import glibc, user_settings
    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory
    from atft_kedro.pipelines.typed import typed
    from atft_kedro.training.checkpoints import CheckpointStore
    from atft_kedro.training.config import TrainConfig
    from atft_kedro.training.data import TrainingArrays, build_arrays
    from atft_kedro.training.loop import train_phase

    if glibc() is None or user_settings():
        raise SystemExit(f"needs glibc and none of the user's malloc settings (set here: {user_settings() or 'none'})")
    params = project_parameters({"raw": {"synthetic_size": args.size}})
    data = run_in_memory(["data_engineering", "graph_construction"], params)
    split_dates = {s: data["splits"].filter(pl.col("split") == s)["Date"].to_numpy().astype("datetime64[D]") for s in ("train", "val")}
    manifest, graphs = data["feature_manifest"], data["graphs"]
    # the project's training settings (its model: the linear paths, the lead-weighted neighbours), the
    # paths started at zero rather than at their fits, which would take most of the time at the full size
    base = dataclasses.replace(typed(TrainConfig, params["training"]), epochs=1, threads=args.threads, linear_start="zero", skip_clips=())
    settings = {"kept": base, "released": dataclasses.replace(base, keep_freed_memory=False)}
    seconds, faults, weights = ({name: [] for name in settings} for _ in range(3))
    with tempfile.TemporaryDirectory() as tmp:
        build_arrays(data["model_input"], data["market_context"], stock_feature_names(manifest)).save(Path(tmp) / "arrays")
        arrays = TrainingArrays.open(Path(tmp) / "arrays")  # memory-mapped, as the catalog loads it
        idx = np.flatnonzero(np.isin(arrays.dates, split_dates["train"]))[: args.dates]
        val = np.flatnonzero(np.isin(arrays.dates, split_dates["val"]))[:1]
        for r in range(-1, args.repeats):  # round -1, untimed on two dates: start-up off the clock
            for name, cfg in (settings.items() if r % 2 == 0 else reversed(settings.items())):  # alternating who goes first
                store = CheckpointStore(Path(tmp) / f"{name}{r}")
                store.save(1, "best", _phase1_start(arrays, graphs, cfg))
                f, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
                train_phase(2, arrays, graphs, idx if r >= 0 else idx[:2], val, cfg, store, manifest, progress=False)
                if r < 0:
                    continue
                seconds[name].append(time.perf_counter() - t)
                faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f)
                weights[name].append(store.load(2, "last")["model"])
    same = all(torch.equal(a[k], b[k]) for a, b in zip(weights["kept"], weights["released"]) for k in a)
    best = {k: min(v) for k, v in seconds.items()}
    print(json.dumps({
        "size": args.size, "stocks": int(arrays.features.shape[1]), "train_dates": len(idx), "threads": args.threads or torch.get_num_threads(),
        "seconds_per_epoch": {k: [round(x, 2) for x in v] for k, v in seconds.items()},
        "minor_faults": faults,
        "speedup_kept_vs_released": round(best["released"] / best["kept"], 2),
        "faults_released_over_kept": round(min(faults["released"]) / max(1, min(faults["kept"])), 1),
        "same_weights": same,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
