"""metrics.json in the shape of SPEC section 7, and a short markdown report."""

from __future__ import annotations

import math

from atft_kedro.evaluation.blend import chosen_weights
from atft_kedro.evaluation.metrics import NEUTRAL_KEYS

__all__ = ["METRIC_KEYS", "NEUTRAL_KEYS", "kept_checkpoint", "markdown_report", "metrics_document"]

METRIC_KEYS = ("ic", "rank_ic", "icir", "rank_icir", "hit_rate", "ls_sharpe", "ls_sharpe_gross", "ls_ann_return", "max_drawdown", "turnover")


def _clean(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6)


def _document(table: dict, keys) -> dict:
    return {h: {s: {k: _clean(m[k]) for k in keys} for s, m in scorers.items()} for h, scorers in table.items()}


def cleaned(value):
    """Nested dicts with every float rounded and NaN -> null."""
    if isinstance(value, dict):
        return {k: cleaned(v) for k, v in value.items()}
    return _clean(value) if isinstance(value, float) else value


def metrics_document(
    table: dict[str, dict[str, dict[str, float]]],
    neutral: dict | None = None,
    *,
    paired: dict | None = None,
    validation_pick: dict | None = None,
    graph_ablation: dict | None = None,
    forecast_parts: dict | None = None,
    baselines: dict | None = None,
    folds: dict | None = None,
    blend: dict | None = None,
    forecast_correlation: dict | None = None,
    by_liquidity: dict | None = None,
) -> dict:
    """table[horizon][scorer][key] -> {"horizons": {h: {scorer: {key: value}}}}; NaN -> null. With
    ``neutral`` (the same layout, ``metrics.neutral_scores``'s keys) also {"neutral": ...}; with
    ``paired`` (model minus the best baseline), ``validation_pick`` (model minus the baseline best
    on validation), ``graph_ablation``, ``forecast_parts`` (what each path of the model's forecast
    adds), ``baselines`` (what tuning chose), ``folds`` (walk-forward: each fold's test RankIC per
    scorer) and ``blend`` (the model and LightGBM blended: the weight validation chose, the blend minus
    each) and ``forecast_correlation`` (each scorer's forecast against the model's: their mean daily
    Spearman correlation) and ``by_liquidity`` (each scorer's RankIC within each date's liquidity
    buckets) those sections as given, cleaned the same way."""
    document = {"horizons": _document(table, METRIC_KEYS)}
    if neutral is not None:
        document["neutral"] = _document(neutral, NEUTRAL_KEYS)
    sections = {"paired": paired, "validation_pick": validation_pick, "graph_ablation": graph_ablation, "forecast_parts": forecast_parts,
                "baselines": baselines, "folds": folds, "blend": blend, "forecast_correlation": forecast_correlation,
                "by_liquidity": by_liquidity}  # fmt: skip
    for name, section in sections.items():
        if section is not None:
            document[name] = cleaned(section)
    return document


def _num(v, fmt: str = ".4f") -> str:
    return "n/a" if v is None else f"{v:{fmt}}"


def _interval(d: dict) -> str:
    """A difference's 95% interval, as the report writes it."""
    return f"[{_num(d['ci95_low'], '+.4f')}, {_num(d['ci95_high'], '+.4f')}]"


def kept_checkpoint(epoch: int, validation: float) -> str:
    """Which checkpoint of its phase a model is, in words: a phase's best is epoch -1 when none of its
    epochs beat its start (the previous phase's best, or phase 0's ridge start) on validation."""
    if epoch < 0:
        return f"its start, which no epoch beat on validation ({validation:.4f})"
    return f"best epoch {epoch} (validation {validation:.4f})"


def _against(document: dict, h: str, baseline_rank_ic: float | None, difference: dict) -> str:
    """The cells of a paired comparison's row after its name: the model's and the baseline's test
    RankIC, the difference, its interval and the dates paired."""
    return (f"{_num(document['horizons'][h]['model']['rank_ic'])} | {_num(baseline_rank_ic)} | {_num(difference['mean'], '+.4f')} | "
            f"{_interval(difference)} | {difference['dates']} |")  # fmt: skip


def console_summary(document: dict) -> str:
    """What a run's evaluation found, for the terminal at its end: every scorer's test RankIC by
    horizon, then the model minus the best baseline on test with its 95% interval, and what a model
    as good as every baseline would show against that after-the-fact best (``selection``)."""
    horizons = list(document["horizons"])
    scorers = list(document["horizons"][horizons[0]])
    width = max(len(s) for s in scorers) + 2
    lines = ["Test RankIC:", " " * width + "".join(f"{h:>9}" for h in horizons)]
    for s in scorers:
        lines.append(f"{s:<{width}}" + "".join(f"{_num(document['horizons'][h][s]['rank_ic']):>9}" for h in horizons))
    if "paired" in document:
        lines.append("The model minus the best baseline on test, per date (95% Newey-West interval):")
        for h, p in document["paired"].items():
            chosen = p.get("selection")
            as_good = f" (a model as good as each baseline: {_num(chosen['mean'], '+.4f')} on average)" if chosen and chosen.get("draws") else ""
            lines.append(f"  {h:>4}  {_num(p['mean'], '+.4f')} {_interval(p)} against {p['best_baseline']}, {p['dates']} dates" + as_good)
    return "\n".join(lines)


def markdown_report(document: dict, counts: dict[str, dict[str, tuple[int, int]]], context: dict) -> str:
    lines = [
        "# Evaluation on the test split",
        "",
        f"Source `{context['source']}`, {context['n_dates']} test dates ({context['start']} .. {context['end']}), "
        f"{context['n_stocks']} stocks; long-short: top/bottom {context['quantile']:.0%}"
        + (f" (a held stock kept within {context['hold_quantile']:.0%})" if context.get("hold_quantile") else "")
        + f", {context['cost_bp']:g} bp per unit turnover, non-overlapping holding for h > 1."
        + (f" Each 5-20 day forecast leans on the 1-day forecast, {context['one_day_share']:.0%} of its ranking's weight"
           " (`forecast.one_day_share`)." if context.get("one_day_share") else ""),
        "",
    ]
    made = context.get("provenance")
    if made:
        m, d = made["model"], made["data"]
        data = f"{d['source']} data `{d['id']}` ({d['stocks']} stocks, {d['first_date']} .. {d['last_date']})" if d else "data without a fingerprint"
        lines += [f"The model: phase {m['phase']}, {kept_checkpoint(m['epoch'], m['validation'])}, training seed "
                  f"{m['seed']}, saved {m['saved_at']}; trained on {data}.", ""]  # fmt: skip
        for path, kept in m.get("starts", {}).items():  # chosen on validation when the phase began
            lines += [f"Start of the {path.split(', ', 1)[-1]} ({path.split(', ', 1)[0]}), chosen on validation: "
                      + "; ".join(f"{h} {name}" for h, name in kept.items()) + ".", ""]  # fmt: skip
    for h, scorers in document["horizons"].items():
        lines += [f"## {h}", ""]
        periods = context.get("ls_periods", {}).get(h)
        if periods is not None:  # a Sharpe of a few periods says little: the long horizons have few on a short test split
            every = "each test date" if h == "1d" else f"every {h.removesuffix('d')} test dates"
            lines += [f"The model's long-short book: {periods} period{'s' if periods != 1 else ''} of {h} (a new book {every}, "
                      "up to the last whose return is known).", ""]  # fmt: skip
        lines += ["| scorer | IC | RankIC | ICIR | RankICIR | hit rate | LS Sharpe | LS Sharpe before costs | LS ann. return | max DD | turnover | dates used / skipped |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for s, m in scorers.items():
            cells = ["n/a" if m[k] is None else f"{m[k]:.4f}" for k in METRIC_KEYS]
            used, skipped = counts[h][s]
            lines.append(f"| {s} | " + " | ".join(cells) + f" | {used} / {skipped} |")
        lines.append("")
    if "paired" in document:
        lines += [
            "## The model against the best baseline",
            "",
            "Per date, the model's RankIC minus that of the baseline with the highest test RankIC at that",
            "horizon; the 95% interval uses a Newey-West standard error at lag h - 1 (h-day targets of",
            "neighbouring dates overlap). An interval above 0 says the model ranks better than every baseline.",
            "`rank_ic_by_horizon.png` draws it beside every scorer's RankIC. The best of four noisy scores,",
            "chosen after they are read, sits above even a model as skilled as each of them: the last",
            "columns are what such a model would show on average and at its 5% quantile (a block bootstrap",
            "of these dates with every scorer at one mean), and the share of its draws at or below the model's.",
            "",
            "| horizon | best baseline | model | baseline | difference | 95% interval | dates | a model as good: mean, 5% | share at or below |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for h, p in document["paired"].items():
            row = f"| {h} | {p['best_baseline']} | " + _against(document, h, document["horizons"][h][p["best_baseline"]]["rank_ic"], p)
            chosen = p.get("selection")  # metrics written before 2026-12-06 have none
            lines.append(row + (f" {_num(chosen['mean'], '+.4f')}, {_num(chosen['q05'], '+.4f')} | {_num(chosen['p'], '.2f')} |" if chosen else " | |"))
        lines.append("")
    if "validation_pick" in document:
        lines += [
            "## The model against the baseline validation picks",
            "",
            "The same per-date difference against the baseline with the best validation RankIC at that",
            "horizon, chosen before the test split is read, as the model's checkpoint is: the baseline a",
            "researcher would have put to work. The best on test (above) is the best of four noisy scores",
            "after the fact, a harder bar than any of them is expected to clear again.",
            "",
            "| horizon | validation picks | its validation RankIC | model | baseline | difference | 95% interval | dates |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for h, p in document["validation_pick"].items():
            lines.append(f"| {h} | {p['baseline']} | {_num(p['val_rank_ic'])} | " + _against(document, h, p["rank_ic"], p))
        lines.append("")
        per_fold = {h: p["folds"] for h, p in document["validation_pick"].items() if "folds" in p}
        if per_fold:  # walk-forward: each test block against the pick of its own fold's validation
            lines += ["Walk-forward: each test block is set against the baseline its own fold's validation picks (never a",
                      "later block's): " + "; ".join(f"{h} " + ", ".join(f"{f} {q['baseline']}" for f, q in folds.items())
                                                 for h, folds in per_fold.items()) + ".", ""]  # fmt: skip
    if "forecast_correlation" in document:
        alike = document["forecast_correlation"]
        horizons = list(alike)
        lines += [
            "## How alike the forecasts are",
            "",
            "Each scorer's forecast against the model's: the Spearman correlation of the two over each test",
            "date's stocks, averaged over the dates. Near 1, the two rank alike and make one bet whatever their",
            "RankICs; near 0, they read different things, and a blend of the two can rank above both",
            "(`evaluation.blend`).",
            "",
            "| scorer | " + " | ".join(horizons) + " |",
            "|---|" + "---|" * len(horizons),
        ]
        for scorer in dict.fromkeys(name for h in horizons for name in alike[h]):
            lines.append(f"| {scorer} | " + " | ".join(_num(alike[h].get(scorer), "+.2f") for h in horizons) + " |")
        lines.append("")
    if "by_liquidity" in document:
        lines += _liquidity_lines(document)
    if "blend" in document:
        lines += [
            "## The model and LightGBM blended",
            "",
            "`blend`: each date's model and LightGBM forecasts as the normal scores of their ranks, LightGBM's",
            "weight (of `evaluation.blend_weights`) the one with the best validation RankIC (walk-forward, each",
            "fold's own). A stack of the two forecasts, scored beside them; the model's rows above stay the",
            "network's own. The blend minus each, per date, with the interval above:",
            "",
            "| horizon | LightGBM's weight | blend | minus the model | 95% interval | minus LightGBM | 95% interval |",
            "|---|---|---|---|---|---|---|",
        ]
        for h, b in document["blend"].items():
            chosen = chosen_weights(b["chosen"])
            weights = ", ".join(f"{f} {w:g}" for f, w in chosen.items()) if isinstance(chosen, dict) else f"{chosen:g}"
            lines.append(f"| {h} | {weights} | {_num(document['horizons'][h]['blend']['rank_ic'])} | {_num(b['minus_model']['mean'], '+.4f')} | "
                         f"{_interval(b['minus_model'])} | {_num(b['minus_lightgbm']['mean'], '+.4f')} | {_interval(b['minus_lightgbm'])} |")  # fmt: skip
        lines.append("")
    if "graph_ablation" in document:
        lines += [
            "## What the graph is worth",
            "",
            "The same trained model with its graph and with the graph's endpoints redrawn at random (same",
            "degrees and edge attributes): the difference is what the model takes from whom each stock listens to.",
            "",
            "| horizon | with the graph | random endpoints | difference | 95% interval |",
            "|---|---|---|---|---|",
        ]
        for h, g in document["graph_ablation"].items():
            d = g["difference"]
            lines.append(f"| {h} | {_num(g['with_graph'])} | {_num(g['random_endpoints'])} | {_num(d['mean'], '+.4f')} | {_interval(d)} |")
        lines.append("")
    if "forecast_parts" in document:
        lines += [
            "## What the forecast is made of",
            "",
            "The model's median forecast is the sum of three paths: the network (temporal encoder, FAN and",
            "GAT, through the quantile heads), a linear map of the stock's own last-day features, and the",
            "graph's linear path (its neighbours' last-day features). Per path: its spread (cross-sectional",
            "standard deviation) as a share of the forecast's, its RankIC alone, the forecast's without it, and",
            "what it adds: the forecast's daily RankIC minus the forecast's without it, with the interval above.",
            "Read on the test split after the fact: a diagnosis, not a choice (the paths are fitted and kept on",
            "training and validation; the last columns say what each added on validation, where that was done).",
            "`forecast_parts.png` draws the test columns.",
            "",
            "| horizon | path | spread | RankIC alone | RankIC without it | adds | 95% interval | adds on validation | its interval |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for h, paths in document["forecast_parts"].items():
            for path, p in paths.items():
                on_val = p.get("validation") or {"adds": {"mean": None, "ci95_low": None, "ci95_high": None}}
                lines.append(f"| {h} | {path} | {_num(p['spread'], '.2f')} | {_num(p['rank_ic_alone'])} | {_num(p['rank_ic_without'])} | "
                             f"{_num(p['adds']['mean'], '+.4f')} | {_interval(p['adds'])} | {_num(on_val['adds']['mean'], '+.4f')} | "
                             f"{_interval(on_val['adds'])} |")  # fmt: skip
        lines.append("")
    if "feature_importance" in document and not document["feature_importance"]["groups"]:
        lines += ["## What the ranking rests on", "", f"Not measured: the feature importance is off ({document['feature_importance'].get('off')}).", ""]
    elif "feature_importance" in document:
        importance = document["feature_importance"]
        horizons = list(dict.fromkeys(h for g in importance["groups"].values() for h in g if h != "features"))
        lines += [
            "## What the ranking rests on",
            "",
            "Each group of features moved between stocks (on each validation date one random permutation of the",
            "stocks, the same for every column of the group and every day of the window) and the validation",
            "forecasts made again: the RankIC lost is what the trained model takes from the group, with the",
            f"interval above (on {importance.get('dates', 'every')} validation dates).",
            "0: the model does not use it, or the other groups carry what it does (the last day's return is in",
            "four of them), so groups that share their information can each look cheap; the row with every",
            "feature moved at once is what they are worth together. `feature_importance.png` draws it.",
            "",
            "| group | features | " + " | ".join(f"{h} lost | 95% interval" for h in horizons) + " |",
            "|---|---|" + "---|---|" * len(horizons),
        ]
        first = horizons[0] if horizons else None
        for group, g in sorted(importance["groups"].items(), key=lambda kv: -(kv[1].get(first, {}).get("worth", {}).get("mean") or 0.0)):
            cells = [f"{_num(g[h]['worth']['mean'], '+.4f')} | {_interval(g[h]['worth'])}" for h in horizons]
            lines.append(f"| {group} | {g['features']} | " + " | ".join(cells) + " |")
        lines.append("")
    if "folds" in document:  # walk-forward: the tables above pool the blocks
        names = list(document["folds"])
        lines += [
            "## Each walk-forward test block",
            "",
            "The tables above pool every fold's test block; here each block's RankIC, scored by the model and",
            "the baselines of its own fold (trained, tuned and refitted on the dates before it).",
            "",
            "| horizon | scorer | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names),
        ]
        for h in document["horizons"]:
            for scorer in document["folds"][names[0]][h]:
                lines.append(f"| {h} | {scorer} | " + " | ".join(_num(document["folds"][f][h][scorer]) for f in names) + " |")
        lines.append("")
    if "neutral" in document:
        lines += [
            "## Without the market and the sectors",
            "",
            "How much of each RankIC is a bet on the market or on sectors: the score's Spearman correlation",
            "with each stock's 60-day beta (mean over dates), and its RankIC against the returns with the",
            "part explained by beta removed, then also each date's sector means. A score that leans on beta",
            "or on sectors gains in a test period whose market or sectors moved its way, whatever else it",
            "knows; the last column is what it knows about stocks within their sector.",
            "",
        ]
        for h, scorers in document["neutral"].items():
            lines += [f"### {h}", "", "| scorer | RankIC | beta exposure | RankIC, beta out | RankIC, beta and sectors out |",
                      "|---|---|---|---|---|"]  # fmt: skip
            for s, m in scorers.items():
                cells = [document["horizons"][h][s]["rank_ic"], *(m[k] for k in NEUTRAL_KEYS)]
                lines.append(f"| {s} | " + " | ".join("n/a" if v is None else f"{v:.4f}" for v in cells) + " |")
            lines.append("")
    return "\n".join(lines)


def _liquidity_lines(document: dict) -> list[str]:
    """The report's section on each ranking within each date's liquidity buckets: per horizon the
    model, the best baseline on test and the oracle (every scorer is in ``metrics.json``)."""
    liquid = document["by_liquidity"]
    buckets, paired = liquid["buckets"], document.get("paired", {})
    lines = [
        "## Where the ranking holds: by liquidity",
        "",
        f"Each date's stocks cut into thirds by `{liquid['feature']}` as it was known that day (the 20-day",
        "Amihud illiquidity: |return| per yen traded), and each scorer's mean daily RankIC within each",
        "third. A ranking that holds only among the least liquid stocks earns less than its RankIC says",
        "once a book trades in size: the last columns are the long-short book's Sharpe after costs on every",
        "stock, and with the least liquid third left out of its universe. `metrics.json` (`by_liquidity`)",
        "has every scorer.",
        "",
        "| horizon | scorer | " + " | ".join(buckets) + " | LS Sharpe | LS Sharpe, least liquid third out |",
        "|---|---|" + "---|" * (len(buckets) + 2),
    ]
    without = liquid.get("ls_sharpe_without_least_liquid", {})
    for h, scores in liquid["rank_ic"].items():
        best = paired.get(h, {}).get("best_baseline")
        for scorer in [s for s in ("model", best, "oracle") if s in scores]:
            sharpe = document["horizons"].get(h, {}).get(scorer, {}).get("ls_sharpe")
            cells = [*(_num(v) for v in scores[scorer]), _num(sharpe, ".2f"), _num(without.get(h, {}).get(scorer), ".2f")]
            lines.append(f"| {h} | {scorer}{' (best baseline)' if scorer == best else ''} | " + " | ".join(cells) + " |")
    return [*lines, ""]
