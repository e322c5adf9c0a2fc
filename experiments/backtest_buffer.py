"""What a buffer does to the model's long-short book: turnover, and the Sharpe after and before costs.

    python experiments/backtest_buffer.py --runs data [other_project/data ...] [--holds 0.25,0.3,0.4,0.5]

``--runs``: the ``data`` folders of finished ``kedro run``s (their validation and test forecasts,
``data/07_model_output/{validation_predictions,predictions}.parquet``). Per run and horizon, the
evaluation's backtest (``evaluation.quantile`` and ``cost_bp`` as given here) without a buffer and with
each ``evaluation.hold_quantile`` of ``--holds``, on validation and on test; the hold whose
Sharpe after costs is best on validation is marked, and its test row is the one to read (test
never chooses); last, per horizon, in how many runs that pick beat no buffer on test. One run's
Sharpe is not a result (docs/reproducibility.md): read several runs.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import polars as pl

from atft_kedro.evaluation.backtest import BacktestConfig, long_short_backtest

SPLITS = {"val": "validation_predictions", "test": "predictions"}


def sweep(frames: dict[str, pl.DataFrame], horizon: str, holds: list[float | None], cfg: BacktestConfig) -> list[dict]:
    """One row per hold (None: no buffer) with each split's Sharpe after and before costs and turnover;
    ``chosen`` marks the hold with the best Sharpe after costs on validation (the first of equals)."""
    h = int(horizon[:-1])
    rows = []
    for hold in holds:
        row = {"hold": hold}
        for split, frame in frames.items():
            s = long_short_backtest(frame, f"pred_{horizon}", f"target_{horizon}", h, replace(cfg, hold_quantile=hold)).summary()
            row |= {f"{split} {k}": s[k] for k in ("ls_sharpe", "ls_sharpe_gross", "turnover")}
        rows.append(row)
    best = max(range(len(rows)), key=lambda i: rows[i]["val ls_sharpe"])
    return [{**r, "chosen": i == best} for i, r in enumerate(rows)]


def with_traded(forecasts: pl.DataFrame, run: Path) -> pl.DataFrame:
    """The forecasts with the run's ``traded`` flag (``05_model_input/model_input.parquet``), so the
    book leaves out stocks that did not trade on a rebalance date, as the evaluation's does."""
    flags = pl.read_parquet(run / "05_model_input" / "model_input.parquet", columns=["Date", "Code", "traded"])
    return forecasts.join(flags, on=["Date", "Code"], how="left", maintain_order="left")


def tally(sweeps: list[list[dict]]) -> tuple[int, int]:
    """Over runs (each one ``sweep``'s rows, no buffer first): in how many the hold validation
    picked has a higher test Sharpe after costs than no buffer, and in how many it picked a buffer."""
    picked = [next(r for r in rows if r["chosen"]) for rows in sweeps]
    above = sum(p["test ls_sharpe"] > rows[0]["test ls_sharpe"] for p, rows in zip(picked, sweeps))
    return above, sum(p["hold"] is not None for p in picked)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", nargs="+", required=True, help="data folders of finished kedro runs")
    parser.add_argument("--holds", default="0.25,0.3,0.4,0.5", help="hold quantiles to try beside none, comma-separated")
    parser.add_argument("--quantile", type=float, default=0.2)
    parser.add_argument("--cost-bp", type=float, default=10.0)
    parser.add_argument("--horizons", default="1d,5d,10d,20d")
    args = parser.parse_args()
    cfg = BacktestConfig(args.quantile, args.cost_bp)
    holds = [None, *(float(q) for q in args.holds.split(","))]
    horizons = args.horizons.split(",")
    sweeps = {h: [] for h in horizons}
    for run in args.runs:
        frames = {split: with_traded(pl.read_parquet(Path(run) / "07_model_output" / f"{name}.parquet"), Path(run)) for split, name in SPLITS.items()}
        print(f"\n{run}\n")
        print("| horizon | hold | validation: Sharpe / before costs / turnover | test: Sharpe / before costs / turnover |")
        print("|---|---|---|---|")
        for horizon in horizons:
            sweeps[horizon].append(rows := sweep(frames, horizon, holds, cfg))
            for r in rows:
                cells = [" / ".join(f"{r[f'{s} {k}']:.2f}" for k in ("ls_sharpe", "ls_sharpe_gross", "turnover")) for s in SPLITS]
                hold = "none" if r["hold"] is None else f"{r['hold']:g}"
                print(f"| {horizon} | {'**' + hold + '** (validation)' if r['chosen'] else hold} | {cells[0]} | {cells[1]} |")
    print()
    for horizon, runs in sweeps.items():
        above, buffered = tally(runs)
        print(f"{horizon}: validation picked a buffer in {buffered} of {len(runs)} runs; its pick's test Sharpe after costs "
              f"above no buffer's in {above} of {len(runs)}")  # fmt: skip


if __name__ == "__main__":
    main()
