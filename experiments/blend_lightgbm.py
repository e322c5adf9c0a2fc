"""The model and LightGBM blended: each date's two forecasts as rank normal scores, weighted on validation.

    python experiments/blend_lightgbm.py --params P --runs s0.json s1.json s2.json

``--runs``: the JSON files ``experiments/seeds.py --out`` wrote for one market (``--params``, the
same parameters the runs had; their scored frames, validation's and test's, beside them). Per fold
and horizon, LightGBM as the evaluation fits it (seed 0, trees early-stopped on the fold's validation
RankIC) forecasts the fold's validation and test rows; its test forecast must repeat the runs'
``lightgbm`` column (checked). Per run, fold and horizon, each date's model and LightGBM forecasts
become the normal scores of their ranks and the blend ``(1 - w) model + w LightGBM`` takes the ``w``
of ``--weights`` whose validation mean daily RankIC is highest (ties: the smaller ``w``). Printed per
horizon, raw and with sector means and beta out: the weights chosen, validation's and test's mean
daily RankIC of the model, LightGBM and the blend (means over the runs), and on test the paired
per-date differences blend - model and blend - LightGBM (each date's RankIC averaged over the runs)
with their Newey-West 95% intervals; and the same for each fixed weight, for reading, not choosing.
LightGBM's validation RankIC is the one its trees were stopped on, so validation favours it a little.
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
    args = parser.parse_args()

    import numpy as np
    import polars as pl

    from _folds import market
    from seeds import _daily
    from atft_kedro.evaluation.baselines import bagged_lightgbm
    from atft_kedro.evaluation.metrics import difference_summary
    from atft_kedro.features.normalise import rank_gauss_by_date
    from atft_kedro.features.splits import split_dates

    weights = [float(w) for w in args.weights.split(",")]
    runs = [json.load(open(f))[0] for f in args.runs]
    splits = {"val": [pl.read_parquet(r["val_frame"]) for r in runs], "test": [pl.read_parquet(r["frame"]) for r in runs]}
    data = market(args.params)
    mean = lambda d: float(np.mean(list(d.values()))) if d else float("nan")  # noqa: E731
    cell = lambda s: f"{s['mean']:+.4f} [{s['ci95_low']:+.4f}, {s['ci95_high']:+.4f}]"  # noqa: E731
    for h in args.horizons.split(","):
        target, lag = f"target_{h}", int(h.rstrip("d")) - 1
        # LightGBM's forecasts of every run's validation and test rows (the same rows in every run of a market)
        scored = {}
        for split, frames in splits.items():
            rows = frames[0].select("Date", "Code", "fold") if "fold" in frames[0].columns else frames[0].select("Date", "Code").with_columns(pl.lit(0).alias("fold"))
            x = rows.join(data.model_input, on=["Date", "Code"], how="left", maintain_order="left").select(data.names).to_numpy()
            forecast = np.full(rows.height, np.nan)
            for fold in rows["fold"].unique().to_list():
                train, val = (split_dates(data.splits, s, int(fold)) for s in ("train", "val"))
                mine = (rows["fold"] == fold).to_numpy()
                forecast[mine], _ = bagged_lightgbm(data.model_input, data.names, target, train, val, data.cfg, x[mine])
            scored[split] = rows.with_columns(pl.Series("lgb", forecast))
        theirs, mine = mean(_daily(splits["test"][0], f"lightgbm_{h}", target, False)), mean(_daily(splits["test"][0].with_columns(scored["test"]["lgb"]), "lgb", target, False))
        if abs(theirs - mine) > 1e-6:
            raise SystemExit(f"{h}: LightGBM refitted ranks {mine:.6f} on test, the runs' {theirs:.6f}: not the evaluation's fit")
        # each run's frames with both forecasts as rank normal scores and every weight's blend
        blended = {split: [] for split in splits}
        for split, frames in splits.items():
            if any(not f.select("Date", "Code").equals(frames[0].select("Date", "Code")) for f in frames):
                raise SystemExit(f"the runs' {split} frames hold different rows: runs of different markets?")
            if scored[split].unique(["Date", "fold"]).height != scored[split]["Date"].n_unique():
                raise SystemExit(f"a {split} date is scored by two folds: each date's RankIC would mix them")
            for f in frames:
                f = f.with_columns(scored[split]["lgb"], scored[split]["fold"].alias("fold_")).filter(pl.col(f"pred_{h}").is_not_null())
                g = rank_gauss_by_date(f, [f"pred_{h}", "lgb"])
                blended[split].append(f.with_columns(((1 - w) * g[f"pred_{h}"] + w * g["lgb"]).alias(f"w{w}") for w in weights))
        for neutral in (False, True):
            if neutral and not all("Sector33Code" in f.columns for f in blended["val"] + blended["test"]):
                continue
            daily = {split: [{w: _daily(f, f"w{w}", target, neutral) for w in weights} for f in frames] for split, frames in blended.items()}
            chosen, test_blend = [], []
            for run, (val, test) in enumerate(zip(blended["val"], blended["test"])):
                picks = {}
                for fold in val["fold_"].unique().sort().to_list():
                    days = set(val.filter(pl.col("fold_") == fold)["Date"].to_list())
                    score = {w: np.mean([v for d, v in daily["val"][run][w].items() if d in days]) for w in weights}
                    picks[fold] = max(weights, key=lambda w: (round(score[w], 10), -w))
                test_days = dict(zip(test["Date"].to_list(), test["fold_"].to_list()))
                test_blend.append({d: v for w in weights for d, v in daily["test"][run][w].items() if picks[test_days[d]] == w})
                chosen.append(picks)
            model, lgb = ([d[w] for d in daily["test"]] for w in (0.0, 1.0))
            days = sorted(set.intersection(*(set(d) for d in test_blend + model + lgb)))
            at = lambda series: np.array([np.mean([s[t] for s in series]) for t in days])  # noqa: E731
            b, m, g = at(test_blend), at(model), at(lgb)
            val_means = {w: np.mean([mean(d[w]) for d in daily["val"]]) for w in weights}
            print(f"{h} {'sectors and beta out' if neutral else 'raw'}: weights chosen {chosen}; validation model {val_means[0.0]:.4f} LightGBM {val_means[1.0]:.4f} "
                  f"best fixed {max(val_means.values()):.4f}; test model {m.mean():.4f} LightGBM {g.mean():.4f} blend {b.mean():.4f}; "
                  f"blend - model {cell(difference_summary(b - m, lag))}; blend - LightGBM {cell(difference_summary(b - g, lag))}; {len(days)} dates", flush=True)  # fmt: skip
            if args.fixed:
                print("   fixed weights, test: " + ", ".join(f"{w}: {at([d[w] for d in daily['test']]).mean():.4f}" for w in weights), flush=True)


if __name__ == "__main__":
    main()
