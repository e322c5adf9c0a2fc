"""metrics.json in the shape of SPEC section 7, and a short markdown report."""

from __future__ import annotations

import math

METRIC_KEYS = ("ic", "rank_ic", "icir", "rank_icir", "hit_rate", "ls_sharpe", "ls_ann_return", "max_drawdown", "turnover")


def _clean(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6)


NEUTRAL_KEYS = ("beta_exposure", "rank_ic_beta_neutral", "rank_ic_sector_beta_neutral")


def _document(table: dict, keys) -> dict:
    return {h: {s: {k: _clean(m[k]) for k in keys} for s, m in scorers.items()} for h, scorers in table.items()}


def metrics_document(table: dict[str, dict[str, dict[str, float]]], neutral: dict | None = None) -> dict:
    """table[horizon][scorer][key] -> {"horizons": {h: {scorer: {key: value}}}}; NaN -> null. With
    ``neutral`` (the same layout, ``metrics.neutral_scores``'s keys) also {"neutral": ...}."""
    document = {"horizons": _document(table, METRIC_KEYS)}
    if neutral is not None:
        document["neutral"] = _document(neutral, NEUTRAL_KEYS)
    return document


def markdown_report(document: dict, counts: dict[str, dict[str, tuple[int, int]]], context: dict) -> str:
    lines = [
        "# Evaluation on the test split",
        "",
        f"Source `{context['source']}`, {context['n_dates']} test dates ({context['start']} .. {context['end']}), "
        f"{context['n_stocks']} stocks; long-short: top/bottom {context['quantile']:.0%}, "
        f"{context['cost_bp']:g} bp per unit turnover, non-overlapping holding for h > 1.",
        "",
    ]
    for h, scorers in document["horizons"].items():
        lines += [f"## {h}", "", "| scorer | IC | RankIC | ICIR | RankICIR | hit rate | LS Sharpe | LS ann. return | max DD | turnover | dates used / skipped |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for s, m in scorers.items():
            cells = ["n/a" if m[k] is None else f"{m[k]:.4f}" for k in METRIC_KEYS]
            used, skipped = counts[h][s]
            lines.append(f"| {s} | " + " | ".join(cells) + f" | {used} / {skipped} |")
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
