"""Each long forecast leaning on the ridge (or further on the 1-day forecast), computed on saved
runs (no training).

For every run (``seeds.py``'s runs.json or one run's JSON: its test and validation frames) the
evaluation's ridge is fitted again from the run's data (training split, penalty chosen on
validation, per walk-forward fold) and forecasts the run's validation and test rows. The lean at
5, 10 and 20 days: each date's model and ridge forecasts as the normal scores of their ranks,
``(1 - s) model + s ridge``. Printed: per group of runs (a market's draws, or one market's seeds),
the lean minus the model on validation for every ``s``, and with ``--test S`` the lean of that
``s`` on test against the model and against the best baseline on test. With ``--on one_day`` the
lean is on the run's own 1-day forecast instead (``pred_1d``; nothing is fitted). ``--write DIR``
(with ``--test``) saves every run's frames with that lean as a runs.json of their own, for
``seeds.py`` to set beside other runs. The rules these numbers were read by:
docs/what_training_has_shown.md, the twenty-ninth session.

    python experiments/ridge_lean.py \\
        --run size_leaders '{"raw": {"synthetic_seed": 21, "synthetic_market": "size_leaders"}}' runs21.json \\
        --run stocknet '{"source": "files", "raw": {"files_dir": "../shared/data/stocknet"}, "splits": {"n_folds": 3, "test_fraction": 0.45}}' s0.json s1.json s2.json \\
        [--shares 0.25 0.5] [--test 0.5] [--on ridge|one_day] [--write DIR]

Runs of one group that are draws of a market (one run each) are pooled as independent markets
(``seeds.pooled_markets``); the runs of a group with several seeds on one market (stocknet) are
averaged date by date first (``seeds.paired_settings``'s way).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seeds import against_best, interval_cell, paired_settings, pooled_markets  # noqa: E402

LONG = ("5d", "10d", "20d")


def run_data(overrides: dict) -> dict:
    """The run's data as its pipelines made them: model_input, splits and the stock feature names."""
    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory

    params = project_parameters(overrides)
    out = run_in_memory(["data_engineering"], params)
    return {"model_input": out["model_input"], "splits": out["splits"], "names": stock_feature_names(out["feature_manifest"]), "params": params}


def with_ridge(frames: list[pl.DataFrame], data: dict) -> tuple[list[pl.DataFrame], dict]:
    """``frames`` (validation, test) with ``ridge_lean_{h}``: the evaluation's tuned ridge of each
    fold, fitted on that fold's training dates, forecasting each frame's rows of that fold."""
    from atft_kedro.evaluation.baselines import BaselineConfig, ridge_scores, row_folds, tuned_ridge
    from atft_kedro.features.splits import split_dates

    cfg = BaselineConfig.from_params(data["params"]["evaluation"])
    model_input, splits, names = data["model_input"], data["splits"], data["names"]
    rows = [f.select("Date", "Code").join(model_input, on=["Date", "Code"], how="left", maintain_order="left") for f in frames]
    folds = [row_folds(f) for f in frames]
    out, alphas = [dict() for _ in frames], {}
    for h in LONG:
        scores = [np.full(f.height, np.nan) for f in frames]
        for fold in sorted(set(np.concatenate(folds).tolist())):
            train_dates, val_dates = (split_dates(splits, s, int(fold)) for s in ("train", "val"))
            coef, info = tuned_ridge(model_input, names, f"target_{h}", train_dates, val_dates, cfg)
            alphas[f"{h} fold{fold}"] = info["alpha"]
            for score, r, f in zip(scores, rows, folds):
                score[f == fold] = ridge_scores(r, names, coef)[f == fold]
        for o, score in zip(out, scores):
            o[f"ridge_lean_{h}"] = score
    return [f.with_columns(pl.Series(c, v) for c, v in o.items()) for f, o in zip(frames, out)], alphas


def leaned(frame: pl.DataFrame, h: str, share: float, on: str = "ridge") -> pl.DataFrame:
    """``frame`` with ``pred_{h}`` the lean of ``share`` on the ridge (``ridge_lean_{h}``) or on the
    1-day forecast (``on="one_day"``), per date and fold as rank normal scores."""
    from atft_kedro.features.normalise import rank_gauss_by_date

    other = "pred_1d" if on == "one_day" else f"ridge_lean_{h}"
    by = ["fold", "Date"] if "fold" in frame.columns else ["Date"]
    ranked = rank_gauss_by_date(frame, [f"pred_{h}", other], by=by)
    return frame.with_columns(((1 - share) * ranked[f"pred_{h}"] + share * ranked[other]).alias(f"pred_{h}"))


def gain(pairs: list[tuple[pl.DataFrame, pl.DataFrame]], h: str, neutral: bool, several_seeds: bool) -> dict:
    """The lean minus the model (each pair: the lean's frame, the model's), per date, pooled: runs of
    one market averaged per date first (``several_seeds``, ``seeds.paired_settings``), else each run
    a market of its own (``seeds.pooled_markets``)."""
    if several_seeds:
        return paired_settings([a for a, _ in pairs], [b for _, b in pairs], h, neutral)
    return pooled_markets([paired_settings([a], [b], h, neutral) for a, b in pairs])


def loaded_runs(entries: list[list[str]], ridge: bool = True) -> dict[str, list[dict]]:
    """``--run LABEL PARAMS FILE...`` entries -> {label: [run, with its frames and (``ridge``) the ridge]}."""
    groups: dict[str, list[dict]] = {}
    for label, overrides, *files in entries:
        data = run_data(json.loads(overrides)) if ridge else None
        for file in files:
            saved = json.loads(Path(file).read_text())
            for run in saved if isinstance(saved, list) else [saved]:
                val, test = pl.read_parquet(run["val_frame"]), pl.read_parquet(run["frame"])
                if ridge:
                    (val, test), alphas = with_ridge([val, test], data)
                    if "ridge_20d" in test.columns and "fold" not in test.columns:
                        agree = np.corrcoef(test["ridge_20d"].to_numpy(), test["ridge_lean_20d"].to_numpy())[0, 1]
                        print(f"{label} {file}: the ridge fitted again against the run's own at 20 days, correlation {agree:.6f}; penalties {alphas}")
                groups.setdefault(label, []).append({"val": val, "test": test, "seed": run["seed"], "saved": run})
    return groups


def write_leaned(runs: list[dict], share: float, on: str, out: Path) -> Path:
    """Each run's test and validation frames with every long horizon leaned (``share``, ``on``),
    in ``out``, and a runs.json that points at them (the run's other records as they were)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, r in enumerate(runs):
        paths = {}
        for key, split in (("frame", "test"), ("val_frame", "val")):
            frame = r[split]
            for h in LONG:
                frame = leaned(frame, h, share, on)
            paths[key] = str(out / f"run{i}_{split}.parquet")
            frame.drop([c for c in frame.columns if c.startswith("ridge_lean_")]).write_parquet(paths[key])
        rows.append({**r["saved"], **paths})
    (out / "runs.json").write_text(json.dumps(rows, indent=1))
    return out / "runs.json"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", nargs="+", action="append", required=True, metavar="LABEL PARAMS FILE", help="a group's label, the runs' data parameters (JSON), their runs.json files")
    ap.add_argument("--shares", nargs="+", type=float, default=[0.25, 0.5])
    ap.add_argument("--test", type=float, default=None, help="read test with this share")
    ap.add_argument("--on", choices=["ridge", "one_day"], default="ridge", help="what the long forecasts lean on")
    ap.add_argument("--write", type=Path, default=None, help="with --test: save the leaned frames here, a directory per group")
    args = ap.parse_args(argv)
    groups = loaded_runs(args.run, ridge=args.on == "ridge")
    for label, runs in groups.items():
        several = len({r["seed"] for r in runs}) > 1
        print(f"\n## {label}: {len(runs)} run(s)" + (" of one market, averaged per date" if several else ", each a market of its own"))
        for neutral in (False, True):
            print(f"\n### validation, the lean minus the model{', sectors and beta out' if neutral else ''}\n")
            print("| share | " + " | ".join(LONG) + " | mean of the three |\n|---|---|---|---|---|")
            for s in args.shares:
                cells = [gain([(leaned(r["val"], h, s, args.on), r["val"]) for r in runs], h, neutral, several) for h in LONG]
                print(f"| {s} | " + " | ".join(interval_cell(c) for c in cells) + f" | {np.mean([c['mean'] for c in cells]):+.4f} |")
        if args.test is None:
            continue
        s = args.test
        if args.write is not None:
            print(f"\nthe leaned runs: {write_leaned(runs, s, args.on, args.write / label)}")
        for neutral in (False, True):
            print(f"\n### test, share {s}{', sectors and beta out' if neutral else ''}\n")
            print("| horizon | lean - model | model - best on test | lean - best on test |\n|---|---|---|---|")
            for h in LONG:
                lean = [leaned(r["test"], h, s, args.on) for r in runs]
                vs_model = gain([(a, r["test"]) for a, r in zip(lean, runs)], h, neutral, several)
                if several:
                    model_best, lean_best = against_best([r["test"] for r in runs], h, neutral), against_best(lean, h, neutral)
                    print(f"| {h} | {interval_cell(vs_model)} | {interval_cell(model_best)} | {interval_cell(lean_best)} |")
                else:
                    model_best = pooled_markets([against_best([r["test"]], h, neutral) for r in runs])
                    lean_best = pooled_markets([against_best([a], h, neutral) for a in lean])
                    print(f"| {h} | {interval_cell(vs_model)} | {interval_cell(model_best)} | {interval_cell(lean_best)} |")


if __name__ == "__main__":
    main()
