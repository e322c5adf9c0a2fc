"""The one-feature signals (20-day momentum, 1-day reversal) per split and horizon: does what
ranks h-day returns on test also rank them on validation and in training?

    python experiments/signals_by_split.py
    python experiments/signals_by_split.py --params '{"raw": {"synthetic_market": "random_leaders"}}'

Builds the market with the project's parameters (conf/base, ``--params`` merged in) through the
data_engineering nodes and prints each signal's mean daily RankIC (raw returns) on the train,
validation and test dates of the first fold, at every horizon. About half a minute.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON")
    args = parser.parse_args()

    import numpy as np
    import polars as pl

    from atft_kedro.evaluation.baselines import signal_columns
    from atft_kedro.evaluation.metrics import daily_scores
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory

    params = project_parameters(json.loads(args.params))
    data = run_in_memory(["data_engineering"], params)
    targets = [c for c in data["model_input"].columns if c.startswith("target_")]
    signals = data["features"].select("Date", "Code", *signal_columns())  # as the evaluation's baselines define them
    frame = signals.join(data["model_input"].select("Date", "Code", *targets), on=["Date", "Code"]).join(
        data["splits"].filter(pl.col("fold") == 0).select("Date", "split"), on="Date"
    )
    min_stocks = params["training"]["min_stocks"]
    print("| signal | split | " + " | ".join(t.removeprefix("target_") for t in targets) + " |")
    print("|---|---|" + "---|" * len(targets))
    for signal in ("momentum_20d", "reversal_1d"):
        for split in ("train", "val", "test"):
            part = frame.filter(pl.col("split") == split)
            cells = [f"{np.mean(daily_scores(part, signal, t, min_stocks).rank_ic):+.4f}" for t in targets]
            print(f"| {signal} | {split} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
