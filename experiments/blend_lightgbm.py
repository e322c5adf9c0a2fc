"""The model and LightGBM blended: each date's two forecasts as rank normal scores, weighted on validation.

    python experiments/blend_lightgbm.py --params P --runs s0.json s1.json s2.json

``--runs``: the JSON files ``experiments/seeds.py --out`` wrote for one market (``--params``, the
same parameters the runs had; their scored frames, validation's and test's, beside them). Per fold
and horizon, LightGBM as the evaluation fits it (seed 0, trees early-stopped on the fold's validation
RankIC) forecasts the fold's validation and test rows; its test forecast must repeat the runs'
``lightgbm`` column (checked). Per run, the evaluation's blend (``evaluation/blend.py``: per fold and
horizon, each date's model and LightGBM forecasts as the normal scores of their ranks, ``(1 - w) model
+ w LightGBM`` with the ``w`` of ``--weights`` whose validation mean daily RankIC is highest, ties the
smaller), for runs saved before the evaluation made it. Printed per horizon, raw and with sector means
and beta out: the weights chosen, the test RankIC of the model, LightGBM and the blend (means over the
runs), and the paired per-date differences blend - model and blend - LightGBM (each date's RankIC
averaged over the runs) with their Newey-West 95% intervals; ``--fixed``: each weight's test RankIC,
for reading, not choosing; ``--margin M``: a fold keeps its chosen weight only where its paired per-date
validation gain over the model alone is above M Newey-West standard errors (lag h - 1), else weight 0
(the research log, the twelfth session). LightGBM's validation RankIC is the one its trees were
stopped on, so validation favours it a little.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default="{}", help="the runs' parameters merged into conf/base's, as JSON")
    parser.add_argument("--runs", nargs="+", required=True, help="seeds.py --out files of one market")
    parser.add_argument("--weights", default="0,0.25,0.5,0.75,1", help="LightGBM's weights validation chooses among")
    parser.add_argument("--horizons", default="1d,5d,10d,20d")
    parser.add_argument("--fixed", action="store_true", help="also each fixed weight's test RankIC")
    parser.add_argument("--margin", type=float, default=0.0, help="keep a fold's weight only where validation's gain over weight 0 is above this many standard errors")
    args = parser.parse_args()

    import numpy as np
    import polars as pl

    from _folds import market
    from seeds import _daily
    from atft_kedro.evaluation.metrics import difference_summary, overlap_lag
    from atft_kedro.evaluation.blend import blend, chosen_weights

    weights = [float(w) for w in args.weights.split(",")]
    runs = [json.load(open(f))[0] for f in args.runs]
    splits = {"val": [pl.read_parquet(r["val_frame"]) for r in runs], "test": [pl.read_parquet(r["frame"]) for r in runs]}
    for split, frames in splits.items():
        if any(not f.select("Date", "Code").equals(frames[0].select("Date", "Code")) for f in frames):
            raise SystemExit(f"the runs' {split} frames hold different rows: runs of different markets?")
    data = market(args.params)
    mean = lambda d: float(np.mean(list(d.values()))) if d else float("nan")  # noqa: E731
    cell = lambda s: f"{s['mean']:+.4f} [{s['ci95_low']:+.4f}, {s['ci95_high']:+.4f}]"  # noqa: E731
    for h in args.horizons.split(","):
        target, lag = f"target_{h}", overlap_lag(h)
        # LightGBM's forecasts of every run's validation and test rows (the same rows in every run of a market)
        scored = {split: pl.Series("lgb", data.lightgbm(frames[0].select("Date", "Code", *(["fold"] if "fold" in frames[0].columns else [])), target))
                  for split, frames in splits.items()}  # fmt: skip
        theirs, mine = mean(_daily(splits["test"][0], f"lightgbm_{h}", target, False)), mean(_daily(splits["test"][0].with_columns(scored["test"]), "lgb", target, False))
        if abs(theirs - mine) > 1e-6:
            raise SystemExit(f"{h}: LightGBM refitted ranks {mine:.6f} on test, the runs' {theirs:.6f}: not the evaluation's fit")
        # each run's blend, as the evaluation makes it (evaluation/blend.py), with the weights to choose among and each alone
        choices = {"chosen": tuple(weights), **{w: (w,) for w in (weights if args.fixed else (0.0, 1.0))}}
        scored_runs, chosen = [], []
        for val, test in zip(splits["val"], splits["test"]):
            val = val.with_columns(scored["val"].alias(f"lightgbm_{h}"))
            made = {name: blend(test, val, h, ws, data.cfg.min_stocks) for name, ws in choices.items()}
            if args.margin:
                made["chosen"] = _with_margin(test, val, h, made["chosen"][1], args.margin, data.cfg.min_stocks)
            scored_runs.append(test.with_columns(pl.Series(f"b{name}", column) for name, (column, _) in made.items()))
            chosen.append(chosen_weights(made["chosen"][1]))
        for neutral in (False, True):
            daily = {name: [_daily(f, f"b{name}", target, neutral) for f in scored_runs] for name in choices}
            days = sorted(set.intersection(*(set(d) for side in daily.values() for d in side)))
            at = lambda series: np.array([np.mean([s[t] for s in series]) for t in days])  # noqa: E731
            b, m, g = at(daily["chosen"]), at(daily[0.0]), at(daily[1.0])
            print(f"{h} {'sectors and beta out' if neutral else 'raw'}: weights chosen {chosen}; test model {m.mean():.4f} LightGBM {g.mean():.4f} "
                  f"blend {b.mean():.4f}; blend - model {cell(difference_summary(b - m, lag))}; blend - LightGBM {cell(difference_summary(b - g, lag))}; "
                  f"{len(days)} dates", flush=True)  # fmt: skip
            if args.fixed:
                print("   fixed weights, test: " + ", ".join(f"{w}: {at(daily[w]).mean():.4f}" for w in weights), flush=True)


def _with_margin(test, val, h: str, chosen: dict, margin: float, min_stocks: int):
    """``blend``'s forecast with each fold's chosen weight kept only where its paired per-date validation
    gain over weight 0 is above ``margin`` Newey-West standard errors (lag h - 1), else weight 0."""
    import numpy as np
    import polars as pl

    from atft_kedro.evaluation.blend import _mixed, _scored
    from atft_kedro.evaluation.metrics import daily_scores, overlap_lag, paired_difference

    by_fold = chosen if "weight" not in chosen else {"fold0": chosen}
    test, scored = _scored(test, h), _scored(val, h).filter(pl.col(f"target_{h}").is_finite())
    out, kept = np.full(test.height, np.nan), {}
    for name, c in by_fold.items():
        fold, w = int(name.removeprefix("fold")), c["weight"]
        rows = scored.filter(pl.col("fold") == fold)
        rows = rows.with_columns(_mixed(rows, w).alias("w"))
        gain = paired_difference(daily_scores(rows, "w", f"target_{h}", min_stocks), daily_scores(rows, "model_", f"target_{h}", min_stocks), overlap_lag(h))
        w = w if gain["mean"] > margin * gain["se"] else 0.0
        mine = (test["fold"] == fold).to_numpy()
        out[mine], kept[name] = _mixed(test, w).to_numpy()[mine], {"weight": w}
    return out, kept if "weight" not in chosen else kept["fold0"]


if __name__ == "__main__":
    main()
