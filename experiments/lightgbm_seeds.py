"""The model's seeds against LightGBM's: the baseline refitted with several seeds of its own.

    python experiments/lightgbm_seeds.py --seeds 0,1,2,3,4 --runs s0.json s1.json s2.json --params P

``--runs``: the JSON files ``experiments/seeds.py --out`` wrote for one market (``--params``, the
same parameters the runs had). The evaluation's LightGBM is one draw of a model with randomness of
its own (bagging and feature sampling, ``evaluation.lightgbm.seed``: 0), so the bar the model's mean
over training seeds is held to carries that draw's luck. Per fold, LightGBM as the evaluation tunes it
(trees early-stopped on the fold's validation RankIC) with each of ``--seeds``, on the data_engineering
outputs (in memory); its forecasts of the runs' own test rows are scored beside the model's (seed 0 must repeat
their ``lightgbm`` column's mean daily RankIC, which is checked), and per horizon, raw and with sector
means and beta out, printed: each LightGBM seed's test RankIC, their mean, the model's mean over its
runs, and the paired per-date difference, the model's mean minus LightGBM's mean over its seeds (each
date's RankIC averaged over seeds on both sides), with its Newey-West 95% interval; the same against
seed 0 alone, the evaluation's bar; and against the seeds' forecasts averaged into one (a bagged
LightGBM, the stronger bar). About a minute per seed on stocknet's three folds.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default="{}", help="the runs' parameters merged into conf/base's, as JSON")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="LightGBM seeds, comma-separated (0: the evaluation's)")
    parser.add_argument("--runs", nargs="+", required=True, help="seeds.py --out files of one market")
    parser.add_argument("--horizons", default="1d,5d,10d,20d")
    args = parser.parse_args()

    import numpy as np
    import polars as pl

    from _folds import market
    from atft_kedro.evaluation.metrics import overlap_lag
    from seeds import _daily

    seeds = [int(s) for s in args.seeds.split(",")]
    frames = [pl.read_parquet(json.load(open(f))[0]["frame"]) for f in args.runs]
    data = market(args.params)
    mean = lambda d: float(np.mean(list(d.values())))  # noqa: E731
    for h in args.horizons.split(","):
        target, lag = f"target_{h}", overlap_lag(h)
        # the runs' test rows, each scored by its fold's fit, as the evaluation scores its baselines
        rows = frames[0].select("Date", "Code", *(["fold"] if "fold" in frames[0].columns else []))
        scored = frames[0].with_columns(pl.Series(f"lgb{seed}", data.lightgbm(rows, target, seed)) for seed in seeds)
        scored = scored.with_columns(pl.mean_horizontal(*(f"lgb{seed}" for seed in seeds)).alias("lgb_bagged"))
        for neutral in (False, True):
            lgb = {seed: _daily(scored, f"lgb{seed}", target, neutral) for seed in seeds}
            if 0 in seeds and not neutral:
                theirs = mean(_daily(frames[0], f"lightgbm_{h}", target, False))
                if abs(mean(lgb[0]) - theirs) > 1e-6:
                    raise SystemExit(f"{h}: LightGBM seed 0 refitted ranks {mean(lgb[0]):.6f}, the runs' {theirs:.6f}: not the evaluation's fit")
            c = against_seeds([_daily(f, f"pred_{h}", target, neutral) for f in frames], lgb, lag)
            cell = lambda s: f"{s['mean']:+.4f} [{s['ci95_low']:+.4f}, {s['ci95_high']:+.4f}]"  # noqa: E731
            line = (f"{h} {'sectors and beta out' if neutral else 'raw'}: LightGBM seeds {', '.join(f'{v:.4f}' for v in c['each'].values())}"
                    f" (mean {c['lightgbm']:.4f}); the model's {len(frames)} runs {c['model']:.4f}; model - LightGBM's mean {cell(c)}")  # fmt: skip
            if "seed 0" in c:
                line += f"; model - seed 0 {cell(c['seed 0'])}"
            bagged = against_seeds([_daily(f, f"pred_{h}", target, neutral) for f in frames], {"bagged": _daily(scored, "lgb_bagged", target, neutral)}, lag)
            line += f"; the seeds' forecasts averaged into one {bagged['lightgbm']:.4f}, model - it {cell(bagged)}"
            print(line + f"; {c['dates']} dates", flush=True)


def against_seeds(model: list[dict], lightgbm: dict, lag: int) -> dict:
    """The model's runs ({date: RankIC} each) against LightGBM's seeds ({seed: {date: RankIC}}), on
    the dates all of them score: each side's per-date mean over its runs or seeds, LightGBM's seeds'
    means (``each``), and the paired difference, the model's mean minus LightGBM's, with its
    Newey-West summary at ``lag`` (and under "seed 0" the same against seed 0 alone, where given)."""
    import numpy as np

    from atft_kedro.evaluation.metrics import difference_summary

    days = sorted(set.intersection(*(set(d) for d in model + list(lightgbm.values()))))
    m = np.array([np.mean([d[t] for d in model]) for t in days])
    b = np.array([np.mean([d[t] for d in lightgbm.values()]) for t in days])
    out = {"model": float(m.mean()), "lightgbm": float(b.mean()), "dates": len(days),
           "each": {s: float(np.mean([d[t] for t in days])) for s, d in lightgbm.items()}, **difference_summary(m - b, lag)}  # fmt: skip
    if 0 in lightgbm:
        out["seed 0"] = difference_summary(m - np.array([lightgbm[0][t] for t in days]), lag)
    return out

if __name__ == "__main__":
    main()
