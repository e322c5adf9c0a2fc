"""What separates LightGBM from the ridge on the same features: interactions, or the features' tails?
Measured without training, per walk-forward fold, on the features the baselines see.

    python experiments/winsorised_ridge.py --params '{"source": "files", "raw": {"files_dir": "../shared/data/stocknet"}, "splits": {"n_folds": 3, "test_fraction": 0.45}}'

Per fold: the evaluation's LightGBM, and the same with 2 leaves a tree (stumps: an additive model,
no interactions) and 4; the ridge on the features (per-date robust z-scores, clipped at 5 by
data_engineering) winsorised at each of ``--clips`` and as they are, at the model's linear skip's
penalty (``training.linear_ridge_alpha``, 1,000) and at the penalty validation picks of the ridge
baseline's (``evaluation.ridge_alphas``); and each ridge family's clip as each fold's validation
picks it (what ``training.skip_clips`` does at the skip's start), and as a purged cross-validation
over the training split picks it (``--cv-blocks`` contiguous blocks, each scored by the fit on the
others less ``max(5, h)`` dates either side: a record about five times validation's); the ridge on
the mean of the features winsorised at each clip (one squashing, no choice), on the features beside
their copies winsorised at each clip (``hinge_basis``: a piecewise-linear additive model, no choice),
and on the features as the normal scores of their ranks per date (``normalisation.rank_groups`` with
every stock group). ``--validation-only`` prints each
fold's validation RankIC and stops before the test split is read (with ``--groups``, also what
LightGBM and the ridge lose with each feature group moved between stocks, ``moved_groups``);
``--rank-group G``: the ridges read group G's features as ranks per date, as
``normalisation.rank_groups: [G]`` makes them (LightGBM reads the features as they are). Prints validation / test RankIC
per fold, then the pooled test RankIC with the paired per-date difference to LightGBM and to the
unclipped ridge at the same penalty (Newey-West at lag h - 1). Reads the data_engineering outputs
only (in memory); about 40 s on stocknet.
"""

from __future__ import annotations

import argparse
import dataclasses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON")
    parser.add_argument("--horizon", default="1d")
    parser.add_argument("--clips", default="0.5,1,1.5,2,3", help="robust z-scores to winsorise the ridge's features at, comma-separated")
    parser.add_argument("--cv-blocks", type=int, default=5, help="blocks of the training split's purged cross-validation")
    parser.add_argument("--validation-only", action="store_true", help="print the validation RankIC per fold and stop: the test split is not read")
    parser.add_argument("--rank-group", default=None, help="a feature group (e.g. range) the ridges read as ranks per date (normalisation.rank_groups)")
    parser.add_argument("--groups", action="store_true",
                        help="with --validation-only: also the validation RankIC LightGBM and the ridge lose with each feature group moved between stocks")
    args = parser.parse_args()

    import numpy as np
    import polars as pl

    from _folds import market
    from atft_kedro.evaluation.baselines import tuned_lightgbm
    from atft_kedro.evaluation.importance import feature_groups
    from atft_kedro.evaluation.metrics import daily_scores, overlap_lag

    data = market(args.params)
    model_input, names, cfg, params = data.model_input, data.names, data.cfg, data.params
    stock_groups = sorted(feature_groups(data.manifest, names))
    if args.rank_group and args.rank_group not in stock_groups:
        raise SystemExit(f"no stock feature group {args.rank_group!r}; the groups are {stock_groups}")
    # the same market with groups read as ranks, exactly as normalisation.rank_groups makes them
    gaussed_all = ranked_market(args.params, stock_groups)
    ranked = ranked_market(args.params, [args.rank_group]) if args.rank_group else data
    skip_alpha = float(params["training"]["linear_ridge_alpha"])
    target, lag = f"target_{args.horizon}", overlap_lag(args.horizon)
    clips = [float(c) for c in args.clips.split(",")] + [np.inf]
    label = lambda c: "as they are" if c == np.inf else f"at {c:g}"  # noqa: E731
    families = {f"ridge (penalty {skip_alpha:g})": (skip_alpha,), "ridge (penalty tuned)": cfg.ridge_alphas}

    pooled, picks = {}, {}
    for (fold, dates, rows, plain), (*_, x), (*_, gaussed) in zip(data.folds(target), ranked.folds(target), gaussed_all.folds(target)):
        # plain: what LightGBM, fitted on the features as they are, reads; x: what the ridges read
        y, days = {s: f[target].to_numpy() for s, f in rows.items()}, {s: f["Date"].to_numpy() for s, f in rows.items()}
        if any(len(v) != len(y[s]) for other in (x, gaussed) for s, v in other.items()):
            raise SystemExit("the ranked market's rows are not the plain market's")
        forecasts = {}  # name -> (validation RankIC, test forecast)
        for leaves in (cfg.lightgbm.num_leaves, 4, 2):
            booster, info = tuned_lightgbm(model_input, names, target, dates["train"], dates["val"],
                                           dataclasses.replace(cfg, lightgbm=dataclasses.replace(cfg.lightgbm, num_leaves=leaves)))  # fmt: skip
            name = "LightGBM" if leaves == cfg.lightgbm.num_leaves else f"LightGBM, {leaves} leaves"
            forecasts[name] = (info["val_rank_ic"], booster.predict(plain["test"], num_iteration=booster.best_iteration))
        for family, alphas in families.items():
            for c in clips:
                val_score, coef = winsorised_ridge(x, y, days, c, alphas, cfg.min_stocks)
                forecasts[f"{family}, features {label(c)}"] = (val_score, np.clip(x["test"], -c, c) @ coef[:-1])
        squashed = {s: np.mean([np.clip(v, -c, c) for c in clips[:-1]], axis=0) for s, v in x.items()}
        val_score, coef = winsorised_ridge(squashed, y, days, np.inf, (skip_alpha,), cfg.min_stocks)
        forecasts[f"ridge (penalty {skip_alpha:g}), the mean of the winsorised features"] = (val_score, squashed["test"] @ coef[:-1])
        hinged = {s: hinge_basis(v, clips[:-1]) for s, v in x.items()}
        for family, alphas in families.items():
            val_score, coef = winsorised_ridge(hinged, y, days, np.inf, alphas, cfg.min_stocks)
            forecasts[f"{family}, the features and their winsorised copies"] = (val_score, hinged["test"] @ coef[:-1])
        val_score, coef = winsorised_ridge(gaussed, y, days, np.inf, (skip_alpha,), cfg.min_stocks)
        forecasts[f"ridge (penalty {skip_alpha:g}), the features as normal scores of their ranks per date"] = (val_score, gaussed["test"] @ coef[:-1])
        if args.validation_only:
            print(f"\nfold {fold} (validation RankIC, {args.horizon}):")
            for name, (val_score, _) in forecasts.items():
                print(f"  {name}: {val_score:.4f}")
            if args.groups:
                booster, _ = tuned_lightgbm(model_input, names, target, dates["train"], dates["val"], cfg)
                fits = {"LightGBM": (lambda v: booster.predict(v, num_iteration=booster.best_iteration), plain["val"])}
                for c in (1.0, np.inf):
                    coef = winsorised_ridge(x, y, days, c, (skip_alpha,), cfg.min_stocks)[1]
                    fits[f"ridge (penalty {skip_alpha:g}), features {label(c)}"] = (lambda v, c=c, coef=coef: np.clip(v, -c, c) @ coef[:-1], x["val"])
                print(f"  validation RankIC lost with each feature group moved between stocks ({args.horizon}):")
                for name, lost in moved_groups(fits, y["val"], days["val"], data.manifest, names, cfg.min_stocks).items():
                    print(f"    {name}: " + ", ".join(f"{g} {v:+.4f}" for g, v in lost.items()))
            continue
        cv_scores = {c: purged_cv(x["train"], y["train"], days["train"], c, skip_alpha, cfg.min_stocks, args.cv_blocks, max(5, lag + 1)) for c in clips}
        per_date = {name: daily_scores(rows["test"].with_columns(pl.Series("score", f)), "score", target, cfg.min_stocks).rank_ic
                    for name, (_, f) in forecasts.items()}  # fmt: skip
        for name, series in per_date.items():
            pooled.setdefault(name, []).append(series)
        for family in families:
            chosen = max((f"{family}, features {label(c)}" for c in clips), key=lambda n: forecasts[n][0])
            picks.setdefault(family, []).append(chosen.rsplit("features ", 1)[1])
            pooled.setdefault(f"{family}, clip validation picks", []).append(per_date[chosen])
        by_cv = max(clips, key=cv_scores.get)
        picks.setdefault("cross-validation", []).append(label(by_cv))
        pooled.setdefault(f"ridge (penalty {skip_alpha:g}), clip cross-validation picks", []).append(per_date[f"ridge (penalty {skip_alpha:g}), features {label(by_cv)}"])
        print(f"\nfold {fold} (validation / test RankIC, {args.horizon}):")
        for name, (val_score, _) in forecasts.items():
            print(f"  {name}: {val_score:.4f} / {per_date[name].mean():.4f}")
        print("  cross-validation RankIC of the penalty-{:g} ridge, features {}".format(skip_alpha, ", ".join(f"{label(c)}: {v:.4f}" for c, v in cv_scores.items())))

    if args.validation_only:
        return
    print("\nthe picks, fold by fold: " + "; ".join(f"{family}: {', '.join(p)}" for family, p in picks.items()))
    lightgbm = np.concatenate(pooled["LightGBM"])
    print(f"\n| forecaster | test RankIC ({args.horizon}) | minus LightGBM, 95% interval | minus the unclipped ridge, 95% interval | dates |")
    print("|---|---|---|---|---|")
    for name, blocks in pooled.items():
        series = np.concatenate(blocks)
        family = next((f for f in families if name.startswith(f)), None)
        cells = [f"{series.mean():.4f}", _difference(series - lightgbm, lag)]
        unclipped = np.concatenate(pooled[f"{family}, features as they are"]) if family else None
        cells.append(_difference(series - unclipped, lag) if family and not name.endswith("as they are") else "")
        print(f"| {name} | " + " | ".join(cells) + f" | {len(series)} |")


def winsorised_ridge(x: dict, y: dict, days: dict, clip: float, alphas, min_stocks: int):
    """The ridge of ``y["train"]`` on ``x["train"]`` winsorised at +-``clip``, at the penalty of
    ``alphas`` whose fit ranks the validation rows (``x["val"]``, winsorised alike) best ->
    (its validation RankIC, its coefficients with the intercept last)."""
    import numpy as np

    from atft_kedro.evaluation.baselines import mean_daily_rank_ic, ridge_solve

    fits = []
    for alpha in alphas:
        coef = ridge_solve(np.clip(x["train"], -clip, clip), y["train"], alpha)
        fits.append((mean_daily_rank_ic(days["val"], np.clip(x["val"], -clip, clip) @ coef[:-1], y["val"], min_stocks), coef))
    return max(fits, key=lambda f: f[0])


def hinge_basis(x, clips):
    """``x`` beside its copies winsorised at each of ``clips``: a ridge on them fits each feature's
    effect as a line with a bend at every clip, on both sides (a piecewise-linear additive model)."""
    import numpy as np

    return np.concatenate([x] + [np.clip(x, -c, c) for c in clips], axis=1)


def moved_groups(fits: dict, y, days, manifest: list, names: list, min_stocks: int, seed: int = 0) -> dict:
    """``fits``: {forecaster: (its forecast of a feature matrix, the matrix it reads)} -> {forecaster:
    {group: its RankIC minus the same with the group's columns moved between the rows of each day}}:
    the pipeline's ``feature_importance`` on the last day's features the baselines read (one
    permutation a day, the same for the group's columns and every forecaster)."""
    import numpy as np

    from atft_kedro.evaluation.baselines import mean_daily_rank_ic
    from atft_kedro.evaluation.importance import ALL_FEATURES, feature_groups

    groups = {**feature_groups(manifest, names), ALL_FEATURES: np.arange(len(names))}
    rng, order = np.random.default_rng(seed), np.arange(len(days))
    for day in np.unique(days):
        rows = np.flatnonzero(days == day)
        order[rows] = rng.permutation(rows)
    out = {}
    for name, (fit, x) in fits.items():
        base = mean_daily_rank_ic(days, fit(x), y, min_stocks)
        out[name] = {}
        for group, columns in groups.items():
            moved = x.copy()
            moved[:, columns] = x[order][:, columns]
            out[name][group] = base - mean_daily_rank_ic(days, fit(moved), y, min_stocks)
    return out


def ranked_market(params_json: str, groups: list):
    """``_folds.market`` with ``groups`` read as the normal scores of their per-date ranks
    (``normalisation.rank_groups``): the same rows, in the same order, as the market without."""
    import json

    from _folds import market

    params = json.loads(params_json)
    params["normalisation"] = {**params.get("normalisation", {}), "rank_groups": list(groups)}
    return market(json.dumps(params))


def purged_cv(x, y, days, clip: float, alpha: float, min_stocks: int, blocks: int, purge: int) -> float:
    """Mean over ``blocks`` contiguous blocks of ``days`` of the RankIC there of the ridge (``alpha``)
    fitted on the other dates less ``purge`` dates either side, the features winsorised at +-``clip``."""
    import numpy as np

    from atft_kedro.evaluation.baselines import mean_daily_rank_ic, ridge_solve

    unique = np.unique(days)
    scores = []
    for block in np.array_split(np.arange(len(unique)), blocks):
        held = np.isin(days, unique[block])
        kept = ~np.isin(days, unique[max(0, block[0] - purge) : block[-1] + purge + 1])
        coef = ridge_solve(np.clip(x[kept], -clip, clip), y[kept], alpha)
        scores.append(mean_daily_rank_ic(days[held], np.clip(x[held], -clip, clip) @ coef[:-1], y[held], min_stocks))
    return float(np.mean(scores))


def _difference(d, lag: int) -> str:
    from atft_kedro.evaluation.metrics import difference_summary

    s = difference_summary(d, lag)
    return f"{s['mean']:+.4f} [{s['ci95_low']:+.4f}, {s['ci95_high']:+.4f}]"


if __name__ == "__main__":
    main()
