"""Full-size data_engineering benchmark: rows per second and peak memory.

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        python tests/benchmarks/bench_data_engineering.py --size full

The synthetic market is generated and written to a temporary folder first; a fresh child process then
reads it and runs every data_engineering step (validation, panel, features, targets, splits,
normalisation, market context), so the peak memory reported is that of the pipeline alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_gib() -> float:
    """The process's peak resident memory so far, in GiB (Linux reports it in KiB; the run's
    hooks log decimal GB: 1 GiB = 1.074 GB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)


def run_pipeline(raw_dir: Path) -> dict:
    from atft_kedro.data.files import read_raw_tables
    from atft_kedro.data.validation import validate_market
    from atft_kedro.features import builders, panel, splits, targets
    from atft_kedro.pipelines.data_engineering import nodes

    timings, peaks = {}, {}
    t0 = time.perf_counter()

    def lap(name):
        nonlocal t0
        now = time.perf_counter()
        timings[name] = round(now - t0, 2)
        peaks[name] = peak_rss_gib()  # the process's peak so far: where it rose is the stage that raised it
        t0 = now

    market = validate_market(**read_raw_tables(raw_dir))
    lap("read_and_validate")
    p = panel.build_panel(market.daily_quotes, market.listed_info)
    lap("panel")
    features, market_features, manifest = builders.build_features(p, market.topix)
    lap("features")
    tg = targets.build_targets(p)
    lap("targets")
    sp = splits.make_splits(p["Date"], splits.SplitConfig())
    lap("splits")
    params = {"clip": 5.0}  # conf/base's normalisation
    model_input = nodes.build_model_input(features, tg, p, manifest, params)  # the pipeline's own nodes, as `kedro run` normalises
    nodes.build_market_context(market_features, sp, params)
    lap("normalise")
    total = sum(timings.values())
    return {
        "rows": p.height,
        "stocks": p["Code"].n_unique(),
        "dates": p["Date"].n_unique(),
        "features": len(manifest),
        "model_input_columns": model_input.width,
        "seconds": round(total, 2),
        "rows_per_second": round(p.height / total),
        "stage_seconds": timings,
        "peak_rss_gib_after_stage": peaks,
        "peak_rss_gib": peak_rss_gib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="full")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_pipeline(args.child)))
        return
    from atft_kedro.data.synthetic import SyntheticConfig, generate_market

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        market = generate_market(SyntheticConfig.sized(args.size))
        gen_seconds = time.perf_counter() - t
        for name in ("daily_quotes", "listed_info", "topix"):
            getattr(market, name).write_parquet(Path(tmp) / f"{name}.parquet")
        del market
        out = subprocess.run([sys.executable, __file__, "--child", tmp], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["synthetic_generation_seconds"] = round(gen_seconds, 2)
    result["size"] = args.size
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
