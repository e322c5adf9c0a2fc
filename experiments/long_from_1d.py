"""Do the model's 5-20 day heads rank 5-20 day returns better than its 1-day forecast does?

    python experiments/long_from_1d.py --runs F0.json F1.json F2.json --out DIR

``--runs``: JSON files written by ``experiments/seeds.py --out`` (each run's validation and test
frames). Prints, per run and horizon, the validation RankIC of the horizon's own head and of the
1-day forecast on the same h-day returns, and which validation prefers. Then the rule "a long
horizon ranks by the 1-day forecast where validation prefers it, run by run" is applied to every
run's frames (copies written under ``--out``; the runs' own files are only read) and compared
with the runs as they are, paired per date (``seeds.py``'s settings report: validation, then
test). Nothing is retrained: the rule is a choice after training, so the frames are what a model
with it would forecast.

``--margin K``: the 1-day forecast replaces a head only where it beats it on validation by more
than K standard errors of their paired per-date difference (Newey-West at lag h - 1; the
one-standard-error rule at K = 1): with 81 validation dates a 20-day choice rests on four
independent periods, and the better of two on them is partly luck.

``--blend``: no choice; every long horizon is forecast by the mean of the per-date z-scores of the
1-day forecast and the horizon's own head (equal weights), written and compared the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LONG = ("5d", "10d", "20d")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", nargs="+", required=True, help="seeds.py --out JSON files (the runs of one market)")
    parser.add_argument("--out", required=True, help="folder for the switched runs' frames and JSON")
    parser.add_argument("--margin", type=float, default=0.0, help="standard errors the 1-day forecast must win by on validation")
    parser.add_argument("--blend", action="store_true", help="every long horizon as the 1-day forecast and its own head, "
                        "their per-date z-scores averaged (nothing chosen)")  # fmt: skip
    args = parser.parse_args()

    import numpy as np
    import polars as pl

    from atft_kedro.evaluation.metrics import daily_scores, overlap_lag, paired_difference
    from seeds import settings_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for f in args.runs for r in json.loads(Path(f).read_text())]
    switched = []
    print("| run | horizon | own head, validation | 1-day forecast, validation | difference / its standard error | kept |\n|---|---|---|---|---|---|")
    for n, r in enumerate(rows):
        val, test = pl.read_parquet(r["val_frame"]), pl.read_parquet(r["frame"])
        use = []
        for h in LONG:
            own, one = (daily_scores(val, p, f"target_{h}", 20) for p in (f"pred_{h}", "pred_1d"))
            diff = paired_difference(one, own, overlap_lag(h))
            switch = diff["mean"] > args.margin * diff["se"] if args.margin > 0 else float(np.mean(one.rank_ic)) > float(np.mean(own.rank_ic))
            use += [h] if switch or args.blend else []
            print(f"| {n} (seed {r['seed']}) | {h} | {np.mean(own.rank_ic):+.4f} | {np.mean(one.rank_ic):+.4f} | "
                  f"{diff['mean'] / diff['se']:+.2f} | {'both' if args.blend else '1-day forecast' if switch else 'own head'} |")  # fmt: skip
        swap = [(zscore("pred_1d") + zscore(f"pred_{h}")) / 2 if args.blend else pl.col("pred_1d") for h in use]
        swap = [e.alias(f"pred_{h}") for e, h in zip(swap, use)]
        frames = {key: out / f"run{n}{suffix}.parquet" for key, suffix in (("frame", ""), ("val_frame", "_val"))}
        val.with_columns(swap).write_parquet(frames["val_frame"])
        test.with_columns(swap).write_parquet(frames["frame"])
        switched.append({**r, **{key: str(path) for key, path in frames.items()}})
    (out / "runs.json").write_text(json.dumps(switched))
    print("\n" + settings_report(switched, rows))


def zscore(column: str):
    """``column`` as a z-score among its date's rows (walk-forward: a date belongs to one fold)."""
    import polars as pl

    c = pl.col(column)
    return (c - c.mean().over("Date")) / c.std().over("Date")


if __name__ == "__main__":
    main()
