"""Pictures of the evaluation: cumulative long-short returns, rolling IC, quantile returns,
RankIC by horizon with the model's paired difference to the best baseline, what each path of the
model's forecast adds, and what each feature group is worth to its ranking."""

from __future__ import annotations

import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from atft_kedro.evaluation.backtest import BacktestResult
from atft_kedro.evaluation.metrics import DailyScores, difference_summary, overlap_lag


def plot_cumulative(results: dict[str, BacktestResult], horizon: str):
    fig = Figure(figsize=(10, 5), constrained_layout=True)
    ax = fig.subplots()
    for name, r in results.items():
        if len(r.net):
            line = ax.plot(r.dates, np.cumprod(1 + r.net) - 1, label=name, lw=2.2 if name == "model" else 1.2)[0]
            if name == "model":  # what the ranking earns before trading it costs
                ax.plot(r.dates, np.cumprod(1 + r.gross) - 1, label="model, before costs", lw=1.2, ls="--", color=line.get_color())
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_title(f"Cumulative long-short return after costs ({horizon}, test split; the model's also before)")
    ax.legend()
    return fig


def plot_rolling_ic(daily: dict[str, tuple[list, np.ndarray]], horizon: str, window: int = 20):
    fig = Figure(figsize=(10, 5), constrained_layout=True)
    ax = fig.subplots()
    for name, (dates, ric) in daily.items():
        if len(ric) >= window:
            rolled = np.convolve(ric, np.ones(window) / window, mode="valid")
            ax.plot(dates[window - 1 :], rolled, label=name, lw=2.2 if name == "model" else 1.2)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_title(f"{window}-day rolling RankIC ({horizon}, test split)")
    ax.legend()
    return fig


def plot_quantile_returns(frame: pl.DataFrame, scores: list[str], target: str, n_quantiles: int = 5):
    """Mean realised target per score quintile of each date, per scorer."""
    fig = Figure(figsize=(10, 5), constrained_layout=True)
    ax = fig.subplots()
    width = 0.8 / len(scores)
    for i, s in enumerate(scores):
        q = (
            frame.select("Date", s, target).drop_nulls().drop_nans()
            .with_columns(((pl.col(s).rank("ordinal").over("Date") - 1) * n_quantiles // pl.len().over("Date")).alias("q"))
            .group_by("q").agg(pl.col(target).mean()).sort("q")
        )  # fmt: skip
        ax.bar(q["q"].to_numpy() + i * width, q[target].to_numpy() * 1e4, width=width, label=s)
    ax.set_xticks(np.arange(n_quantiles) + 0.4 - width / 2, [f"Q{i + 1}" for i in range(n_quantiles)])
    ax.set_ylabel(f"mean {target} (bp)")
    ax.set_title("Realised return by score quintile (Q5 = highest score)")
    ax.legend()
    return fig


def plot_rank_ic_by_horizon(daily: dict[str, dict[str, DailyScores]], paired: dict[str, dict], scorers: tuple[str, ...],
                            picked: dict[str, dict] | None = None):  # fmt: skip
    """Left: each scorer's mean daily RankIC per horizon (test split) with its 95% interval
    (Newey-West at lag h - 1); right: the model minus the best baseline per date (``paired``, the
    metrics' section), mean and 95% interval, the baseline named under each horizon; with
    ``picked`` (``validation_pick``) beside it, hatched, the model minus the baseline validation picks."""
    fig = Figure(figsize=(12, 4.8), constrained_layout=True)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    horizons = list(daily)
    width = 0.8 / len(scorers)
    for i, name in enumerate(scorers):
        cells = [difference_summary(daily[h][name].rank_ic, overlap_lag(h)) for h in horizons]
        mean = np.array([c["mean"] for c in cells])
        half = np.array([1.96 * c["se"] for c in cells])
        left.bar(np.arange(len(horizons)) + (i - (len(scorers) - 1) / 2) * width, mean, width, yerr=half, capsize=2, label=name,
                 error_kw={"ecolor": "dimgrey", "elinewidth": 0.8}, edgecolor="black" if name == "model" else None,
                 linewidth=1.2 if name == "model" else 0)  # fmt: skip
    left.axhline(0, color="grey", lw=0.6)
    left.set_xticks(np.arange(len(horizons)), horizons)
    left.set_ylabel("mean daily RankIC")
    left.set_title("RankIC by horizon (test split, 95% intervals)")
    left.legend(fontsize=8)
    comparisons = [(paired, "best_baseline", "against the best on test", None)]
    if picked is not None:
        comparisons.append((picked, "baseline", "against validation's pick", "//"))
    bar = 0.6 / len(comparisons)
    for k, (section, key, _, hatch) in enumerate(comparisons):
        values = lambda key: np.array([np.nan if section[h][key] is None else section[h][key] for h in horizons], dtype=float)  # noqa: E731  (null: no scored date)
        mean, low, high = values("mean"), values("ci95_low"), values("ci95_high")
        colours = ["tab:green" if lo > 0 else "tab:red" if hi < 0 else "tab:grey" for lo, hi in zip(low, high)]
        right.bar(np.arange(len(horizons)) + (k - (len(comparisons) - 1) / 2) * bar, mean, bar, yerr=[mean - low, high - mean], capsize=3,
                  color=colours, hatch=hatch, edgecolor="white" if hatch else None,
                  error_kw={"ecolor": "dimgrey", "elinewidth": 0.8})  # fmt: skip
    right.axhline(0, color="grey", lw=0.6)
    names = ["\n".join(section[h][key] for section, key, _, _ in comparisons) for h in horizons]
    right.set_xticks(np.arange(len(horizons)), [f"{h}\nvs\n{n}" for h, n in zip(horizons, names)], fontsize=8 if picked is None else 7)
    right.set_title("Model minus the best baseline, per date" if picked is None else "Model minus a baseline, per date")
    if picked is not None:  # the colours say the interval's side, the hatch which baseline
        handles = [Patch(facecolor="tab:grey", hatch=hatch, edgecolor="white", label=label) for _, _, label, hatch in comparisons]
        right.legend(handles=handles, fontsize=7)
    return fig


def plot_forecast_parts(parts: dict[str, dict[str, dict]], forecast: dict[str, float]):
    """Left: the RankIC of the model's forecast and of each of its paths alone, per horizon; right:
    what each path adds, the forecast's daily RankIC minus the forecast's without the path, with its
    95% interval (``parts``: the metrics' ``forecast_parts``; ``forecast``: the forecast's RankIC per
    horizon). Green: the interval is above 0; red: below."""
    fig = Figure(figsize=(12, 4.8), constrained_layout=True)
    left, right = fig.subplots(1, 2)
    horizons = list(parts)
    paths = list(dict.fromkeys(p for h in horizons for p in parts[h]))
    x = np.arange(len(horizons))
    width = 0.8 / (len(paths) + 1)
    left.bar(x - len(paths) / 2 * width, [forecast[h] for h in horizons], width, label="forecast", color="black")
    for i, path in enumerate(paths):
        cells = [parts[h].get(path) for h in horizons]
        left.bar(x + (i + 1 - len(paths) / 2) * width, [np.nan if c is None else c["rank_ic_alone"] for c in cells], width, label=path)
        adds = [c["adds"] if c else {"mean": np.nan, "ci95_low": np.nan, "ci95_high": np.nan} for c in cells]
        mean, low, high = (np.array([a[k] for a in adds], dtype=float) for k in ("mean", "ci95_low", "ci95_high"))
        colours = ["tab:green" if lo > 0 else "tab:red" if hi < 0 else "tab:grey" for lo, hi in zip(low, high)]
        right.bar(x + (i - (len(paths) - 1) / 2) * 0.8 / len(paths), mean, 0.8 / len(paths), yerr=[mean - low, high - mean], capsize=3,
                  color=colours, error_kw={"ecolor": "dimgrey", "elinewidth": 0.8})  # fmt: skip
    for ax in (left, right):
        ax.axhline(0, color="grey", lw=0.6)
    left.set_xticks(x, horizons)
    left.set_ylabel("mean daily RankIC")
    left.set_title("The forecast and each of its paths alone (test split)")
    left.legend(fontsize=8)
    right.set_xticks([i + (k - (len(paths) - 1) / 2) * 0.8 / len(paths) for i in x for k in range(len(paths))],
                     [f"{h} {p}" for h in horizons for p in paths], fontsize=7, rotation=90)  # fmt: skip
    right.set_title("What each path adds: forecast minus forecast without it, per date")
    return fig


def plot_feature_importance(importance: dict):
    """What each feature group is worth to the model's ranking (``importance``: the
    ``feature_importance`` node's document): per group and horizon, the validation RankIC lost with
    the group moved between stocks, with its 95% interval; groups in order of their worth at the
    first horizon, the most at the top."""
    groups = importance["groups"]
    if not groups:  # off (evaluation.importance_dates: 0)
        fig = Figure(figsize=(6, 1.5), constrained_layout=True)
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, f"feature importance off ({importance.get('off')})", ha="center", va="center")
        return fig
    horizons = list(dict.fromkeys(h for g in groups.values() for h in g if h != "features"))

    def worth(g: str, h: str, key: str = "mean") -> float:
        value = groups[g].get(h, {}).get("worth", {}).get(key)
        return np.nan if value is None else value

    order = sorted(groups, key=lambda g: np.nan_to_num(worth(g, horizons[0]), nan=-np.inf)) if horizons else list(groups)
    fig = Figure(figsize=(10, 1.5 + 0.45 * max(len(order), 1) * max(len(horizons), 1) ** 0.5), constrained_layout=True)
    ax = fig.subplots()
    y = np.arange(len(order))
    height = 0.8 / max(len(horizons), 1)
    for i, h in enumerate(horizons):
        mean = np.array([worth(g, h) for g in order])
        low, high = np.array([worth(g, h, "ci95_low") for g in order]), np.array([worth(g, h, "ci95_high") for g in order])
        ax.barh(y - (i - (len(horizons) - 1) / 2) * height, mean, height, xerr=[mean - low, high - mean], capsize=2, label=h,
                error_kw={"ecolor": "dimgrey", "elinewidth": 0.8})  # fmt: skip
    ax.axvline(0, color="grey", lw=0.6)
    ax.set_yticks(y, [f"{g} ({groups[g]['features']})" for g in order])
    ax.set_xlabel("validation RankIC lost with the group moved between stocks (95% interval)")
    ax.set_title(f"What the model's ranking rests on: each feature group's worth ({importance.get('dates', 'all')} validation dates)")
    if horizons:
        ax.legend(fontsize=8, loc="lower right")
    return fig
