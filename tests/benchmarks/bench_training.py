"""Seconds per training epoch, safe vs optimized mode, on the same data in the same run.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        python tests/benchmarks/bench_training.py --size small --dates 120

Builds the synthetic market through the library functions the pipelines call, then trains phase 2
(everything on: FAN, GAT, all horizons) for one epoch over the same training dates in each mode,
from the same initial weights. Safe: one date per step, one process, one thread, torch reference
GAT; with more than one core also safe mode on all of them (``training.threads: 0``).
Optimized: ``--dates-per-batch`` dates per step (block-diagonal graph), the fused Triton kernel and
bf16 autocast when CUDA is present, DataLoader workers on memory-mapped arrays. On CUDA also
optimized with ``cuda_graph`` (the step recorded once and replayed, batches padded to static shapes). Then counts what
would make the host wait for the device in an optimized epoch (``HostReads``): per step (epochs of
2 and 4 steps, the difference over 2) and per epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="small")
    parser.add_argument("--days", type=int, default=None, help="market days instead of the size's (e.g. --size full --days 1450: ~1,000 training dates)")
    parser.add_argument("--graph-rebuild-every", type=int, default=1,
                        help="build each r-th date's graph and reuse it in between: a faster set-up; the graphs' shapes, and so the epoch's cost, stay the same")
    parser.add_argument("--dates", type=int, default=120, help="training dates in the epoch")
    parser.add_argument("--val-dates", type=int, default=1,
                        help="validation dates scored after the epoch (0: the whole validation split, as a real epoch does)")
    parser.add_argument("--dates-per-batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (optimized mode); they only help with spare cores")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--profile", type=int, default=0, metavar="DATES",
                        help="then profile optimized mode over this many dates (torch.profiler) and print the costliest ops")
    args = parser.parse_args()

    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory
    from atft_kedro.training.checkpoints import CheckpointStore
    from atft_kedro.training.data import TrainingArrays, build_arrays
    from atft_kedro.training.config import TrainConfig
    from atft_kedro.training.loop import train_phase

    import torch

    overrides = {"n_days": args.days} if args.days else {}
    params = project_parameters({"raw": {"synthetic_size": args.size, "synthetic_overrides": overrides},
                                 "graph": {"rebuild_every": args.graph_rebuild_every}})  # fmt: skip
    data = run_in_memory(["data_engineering", "graph_construction"], params)
    train_dates = data["splits"].filter(pl.col("split") == "train")["Date"]
    manifest, graphs = data["feature_manifest"], data["graphs"]
    with tempfile.TemporaryDirectory() as tmp:
        build_arrays(data["model_input"], data["market_context"], stock_feature_names(manifest)).save(Path(tmp) / "arrays")
        arrays = TrainingArrays.open(Path(tmp) / "arrays")  # memory-mapped, as the catalog loads it
        idx = np.flatnonzero(np.isin(arrays.dates, train_dates.to_numpy().astype("datetime64[D]")))[: args.dates]
        val_all = np.flatnonzero(np.isin(arrays.dates, data["splits"].filter(pl.col("split") == "val")["Date"].to_numpy().astype("datetime64[D]")))
        val = val_all if args.val_dates == 0 else val_all[: args.val_dates]
        modes = {
            "safe": TrainConfig(mode="safe", epochs=1),
            "optimized": TrainConfig(mode="optimized", epochs=1, dates_per_batch=args.dates_per_batch, num_workers=args.workers),
        }
        if torch.get_num_threads() > 1:  # safe mode on every core (training.threads: 0) instead of one thread
            modes["safe_all_threads"] = dataclasses.replace(modes["safe"], threads=0)
        if torch.cuda.is_available():  # the step recorded once in a CUDA graph and replayed
            modes["optimized_cuda_graph"] = dataclasses.replace(modes["optimized"], cuda_graph=True)
        seconds = {name: [] for name in modes}
        for r in range(-1, args.repeats):  # round -1, untimed on a few dates: start-up (CUDA, kernel builds) off the clock
            for name, cfg in modes.items():
                store = CheckpointStore(Path(tmp) / f"{name}{r}")
                store.save(1, "best", _phase1_start(arrays, graphs, cfg))
                t = time.perf_counter()
                train_phase(2, arrays, graphs, idx if r >= 0 else idx[: 4 * args.dates_per_batch], val, cfg, store, manifest, progress=False)
                if r >= 0:
                    seconds[name].append(time.perf_counter() - t)
        reads = _host_reads(arrays, graphs, idx, val, modes["optimized"], Path(tmp) / "reads", manifest)
        if args.profile:
            _profile(arrays, graphs, idx[: args.profile], val, modes["optimized"], CheckpointStore(Path(tmp) / "profile"), manifest)
    best = {k: min(v) for k, v in seconds.items()}
    print(json.dumps({
        "size": args.size, "stocks": int(arrays.features.shape[1]), "days": len(arrays.dates), "train_dates": len(idx), "val_dates": len(val),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "dates_per_batch": args.dates_per_batch, "workers": args.workers,
        "seconds_per_epoch": {k: round(v, 2) for k, v in best.items()},
        "all_runs": {k: [round(x, 2) for x in v] for k, v in seconds.items()},
        "threads": torch.get_num_threads(),
        "speedup_optimized_vs_safe": round(best["safe"] / best["optimized"], 2),
        **({"speedup_safe_all_threads_vs_safe": round(best["safe"] / best["safe_all_threads"], 2)} if "safe_all_threads" in best else {}),
        **({"speedup_cuda_graph_vs_optimized": round(best["optimized"] / best["optimized_cuda_graph"], 2)} if "optimized_cuda_graph" in best else {}),
        "host_reads_optimized": reads,
    }, indent=1))  # fmt: skip


def _host_reads(arrays, graphs, idx, val, cfg, root, manifest) -> dict:
    """Host reads of an optimized epoch of 2 and of 4 steps: per step, and the rest per epoch."""
    from atft_kedro.training.checkpoints import CheckpointStore
    from atft_kedro.training.host_reads import reads_per_epoch
    from atft_kedro.training.loop import train_phase

    with reads_per_epoch() as counted:
        for steps in (2, 4):
            store = CheckpointStore(root / str(steps))
            store.save(1, "best", _phase1_start(arrays, graphs, cfg))
            train_phase(2, arrays, graphs, idx[: steps * cfg.dates_per_batch], val, dataclasses.replace(cfg, keep_start=False), store,
                        manifest, progress=False)  # fmt: skip
    per_step = (counted[4].total - counted[2].total) / 2
    return {"per_step": per_step, "per_epoch_besides": counted[2].total - 2 * per_step,
            "calls_2_steps": dict(counted[2].calls), "calls_4_steps": dict(counted[4].calls)}  # fmt: skip


def _profile(arrays, graphs, idx, val, cfg, store, manifest) -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from atft_kedro.training.loop import train_phase

    store.save(1, "best", _phase1_start(arrays, graphs, cfg))
    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        train_phase(2, arrays, graphs, idx, val, cfg, store, manifest, progress=False)
    for key in (["self_cuda_time_total"] if cuda else []) + ["self_cpu_time_total"]:
        print(prof.key_averages().table(sort_by=key, row_limit=22, max_name_column_width=60))


def _phase1_start(arrays, graphs, cfg):
    """A phase-1 'best' checkpoint with fixed initial weights, so both modes start alike."""
    import torch

    from atft_kedro.training.loop import build_model

    torch.manual_seed(0)
    model = build_model(arrays, graphs, cfg, 1, torch.device("cpu"))
    return {"model": model.state_dict(), "epoch": 0, "best": 0.0}


if __name__ == "__main__":
    main()
