"""Does the linear skip's start gain from weighting recent training dates more, or each row by its
stock's volatility? Measured without training, on validation only, per walk-forward fold, with the
start's own candidates.

    python experiments/recency_ridge.py --params '{"source": "files", "raw": {"files_dir": "../shared/data/stocknet"}, "splits": {"n_folds": 3, "test_fraction": 0.45}}'

The skip's start (``training.skip_clips``, ``skip_targets``) is the ridge at the skip's penalty
(``training.linear_ridge_alpha``) on the features as they are or winsorised at each clip, fitted on
the training dates' targets as they are or as per-date ranks, the candidate validation ranks best
kept. Here each candidate is also fitted with the training rows weighted by ``0.5 ** (age /
half-life)``, age the trading dates from the fold's last training date, the weights scaled to mean 1
so the penalty weighs as without them, for each of ``--halflives``; with the rows weighted by
``vol_20d ** -p`` (weighted least squares for noise that grows with the stock's volatility), for
each power p of ``--vol-powers``; and, unweighted, at each of ``--alphas`` in place of the skip's
penalty; and (``--fit-horizons``) fitted on a longer horizon's returns of the same rows, a less
noisy target for the same slopes where a signal lasts several days. Per fold it prints each family's (one half-life or
penalty, every clip and target) best validation RankIC, then the choice made on
validation's first half and scored on its later half: the start as it is chosen today (no weights)
against the same choice with the other families' candidates beside it, paired per date (Newey-West at lag
h - 1), and pooled over the folds. With ``--one-se`` the other choice is instead today's candidates
chosen by the one-standard-error rule (``one_se_choice``). The test split is never read.
"""

from __future__ import annotations

import argparse
import math


def recency_weights(days, halflife: float):
    """Per row, ``0.5 ** (age / halflife)`` with age its date's distance in dates from the last
    date of ``days`` (ascending), scaled to mean 1 (all 1 for an infinite half-life)."""
    import numpy as np

    _, position = np.unique(days, return_inverse=True)
    if math.isinf(halflife):
        return np.ones(len(days))
    w = 0.5 ** ((position.max() - position) / halflife)
    return w / w.mean()


def volatility_weights(days, vol, power: float, floor: float = 0.1):
    """Per row, ``vol ** -power`` with ``vol`` floored at its date's ``floor`` quantile (a stale,
    near-constant price is not a noiseless return) and a missing one at its date's median, scaled
    to mean 1."""
    import polars as pl

    f = pl.DataFrame({"d": days, "v": vol}).with_columns(pl.col("v").fill_nan(None))
    v = f.select(
        pl.max_horizontal(pl.col("v").fill_null(pl.col("v").median().over("d")), pl.col("v").quantile(floor).over("d"))
    ).to_series().to_numpy()  # fmt: skip
    w = v ** -power
    return w / w.mean()


def one_se_choice(scores: dict, dates, lag: int = 0):
    """The one-standard-error rule over ``scores`` ({(family, clip, kind): {date: RankIC}}, one
    family): of the candidates whose mean RankIC over ``dates`` is within one standard error (of
    the paired per-date difference, Newey-West at ``lag``) of the best's, the one that winsorises
    least (the features as they are first, then the larger clips), fitted on the returns before
    their ranks."""
    import numpy as np

    from atft_kedro.evaluation.metrics import difference_summary

    mean = lambda k: float(np.mean([scores[k][d] for d in dates]))  # noqa: E731
    best = max(scores, key=mean)
    close = [k for k in scores if k == best or mean(k) - mean(best) >= -difference_summary(np.array([scores[best][d] - scores[k][d] for d in dates]), lag)["se"]]
    return min(close, key=lambda k: (-k[1], k[2] != "raw"))


def by_date(days, score, y, min_stocks: int) -> dict:
    """{date: Spearman correlation of ``score`` and ``y`` among its rows} for the dates with at
    least ``min_stocks`` rows."""
    from atft_kedro.evaluation.baselines import daily_rank_ic

    d = daily_rank_ic(days, score, y, min_stocks)
    return dict(zip(d["d"].to_list(), d["r"].to_list()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON")
    parser.add_argument("--horizon", default="1d")
    parser.add_argument("--halflives", default="500,250,125", help="half-lives in trading dates, comma-separated ('' for none)")
    parser.add_argument("--alphas", default="", help="penalties to try in place of the skip's, unweighted, comma-separated")
    parser.add_argument("--one-se", action="store_true", help="set the one-standard-error rule's choice against today's")
    parser.add_argument("--vol-powers", default="", help="powers p of the rows' vol_20d ** -p weights, comma-separated ('' for none)")
    parser.add_argument("--fit-horizons", default="", help="longer targets the candidates are also fitted on (say 5d), comma-separated ('' for none)")
    args = parser.parse_args()

    import numpy as np

    from _folds import market
    from atft_kedro.evaluation.baselines import ridge_solve
    from atft_kedro.evaluation.metrics import difference_summary, overlap_lag
    from atft_kedro.training.starts import ranked_by_date

    data = market(args.params)
    training = data.params["training"]
    alpha, clips = float(training["linear_ridge_alpha"]), [math.inf, *sorted(set(training["skip_clips"]))]
    kinds = list(training["skip_targets"])
    target, lag, min_stocks = f"target_{args.horizon}", overlap_lag(args.horizon), data.cfg.min_stocks
    numbers = lambda text: [float(v) for v in text.split(",") if v]  # noqa: E731
    h = args.horizon  # a family: (half-life, penalty, volatility power, the horizon of the targets fitted)
    families = ([(math.inf, alpha, 0.0, h)] + [(hl, alpha, 0.0, h) for hl in numbers(args.halflives)]
                + [(math.inf, a, 0.0, h) for a in numbers(args.alphas) if a != alpha]
                + [(math.inf, alpha, p, h) for p in numbers(args.vol_powers) if p != 0]
                + [(math.inf, alpha, 0.0, f) for f in args.fit_horizons.split(",") if f and f != h])  # fmt: skip
    label = lambda f: ("today's start" if f == families[0] else f"rows weighted by vol ** -{f[2]:g}" if f[2]  # noqa: E731
                       else f"fitted on {f[3]} returns" if f[3] != h
                       else f"half-life {f[0]:g} dates" if f[1] == alpha else f"penalty {f[1]:g}")  # fmt: skip

    pooled, other = [], "the one-standard-error rule's" if args.one_se else "widened"
    for fold, dates, rows, x in data.folds(target):
        order = {s: np.argsort(f["Date"].to_numpy(), kind="stable") for s, f in rows.items()}  # date order: ranked_by_date's blocks
        days = {s: f["Date"].to_numpy()[order[s]] for s, f in rows.items()}
        y = {s: f[target].to_numpy().astype(np.float64)[order[s]] for s, f in rows.items()}
        x = {s: v[order[s]] for s, v in x.items()}
        vol = data.raw_feature("vol_20d", target, dates["train"])[order["train"]] if args.vol_powers else None
        sizes = np.unique(days["train"], return_counts=True)[1]
        fitted_on = {h: {"raw": y["train"], "rank": ranked_by_date(y["train"][:, None], sizes)[:, 0]}}
        for f in {f[3] for f in families} - {h}:  # a longer target of the same rows, 0 (the date's mean) where missing
            longer = np.nan_to_num(data.other_target(f"target_{f}", target, dates["train"])[order["train"]])
            fitted_on[f] = {"raw": longer, "rank": np.nan_to_num(ranked_by_date(longer[:, None], sizes)[:, 0])}
        val_dates = np.unique(days["val"])
        first = days["val"] <= val_dates[len(val_dates) // 2 - 1]
        scores = {}  # ((half-life, penalty, volatility power), clip, kind) -> {date: RankIC} on validation
        for family in families:
            w = recency_weights(days["train"], family[0])
            if family[2]:
                v = volatility_weights(days["train"], vol, family[2])
                if fold == 0 and family == families[-1]:
                    print(f"  (vol ** -{family[2]:g} weights: 1%, 50%, 99% quantiles {np.quantile(v, [0.01, 0.5, 0.99]).round(2).tolist()})")
                w = w * v
                w = w / w.mean()
            for c in clips:
                for kind in kinds:
                    coef = ridge_solve(np.clip(x["train"], -c, c), fitted_on[family[3]][kind], family[1], weights=w)
                    scores[family, c, kind] = by_date(days["val"], np.clip(x["val"], -c, c) @ coef[:-1], y["val"], min_stocks)
        mean = lambda d, keep=None: float(np.mean([v for k, v in d.items() if keep is None or k in keep]))  # noqa: E731
        early = set(days["val"][first].tolist())
        later = sorted(set(days["val"][~first].tolist()))
        print(f"\nfold {fold}, validation RankIC ({args.horizon}) of each family's best candidate (all of validation):")
        for family in families:
            best = max((k for k in scores if k[0] == family), key=lambda k: mean(scores[k]))
            print(f"  {label(family)}: {mean(scores[best]):.4f} (clip {best[1]:g}, {best[2]} targets)")
        today = max((k for k in scores if k[0] == families[0]), key=lambda k: mean(scores[k], early))
        if args.one_se:
            first_dates = sorted(early & set.intersection(*(set(v) for v in scores.values())))
            widened = one_se_choice({k: v for k, v in scores.items() if k[0] == families[0]}, first_dates, lag)
        else:
            widened = max(scores, key=lambda k: mean(scores[k], early))
        diff = np.array([scores[widened][d] - scores[today][d] for d in later])
        pooled.append(diff)
        s = difference_summary(diff, lag)
        print(f"  chosen on the first half: today's {today[1:]} ({label(today[0])}), {other} {widened[1:]} ({label(widened[0])}); "
              f"later half ({len(later)} dates): {mean(scores[widened], later):.4f} against {mean(scores[today], later):.4f}, "
              f"{s['mean']:+.4f} [{s['ci95_low']:+.4f}, {s['ci95_high']:+.4f}]")  # fmt: skip
    s = difference_summary(np.concatenate(pooled), lag)
    print(f"\npooled later halves, {other} minus today's: {s['mean']:+.4f} [{s['ci95_low']:+.4f}, {s['ci95_high']:+.4f}] over {s['dates']} dates")


if __name__ == "__main__":
    main()
