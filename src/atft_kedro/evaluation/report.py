"""metrics.json in the shape of SPEC section 7, and a short markdown report."""

from __future__ import annotations

import math

METRIC_KEYS = ("ic", "rank_ic", "icir", "rank_icir", "hit_rate", "ls_sharpe", "ls_ann_return", "max_drawdown", "turnover")


def _clean(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 6)


def metrics_document(table: dict[str, dict[str, dict[str, float]]]) -> dict:
    """table[horizon][scorer][key] -> {"horizons": {h: {scorer: {key: value}}}}; NaN -> null."""
    return {"horizons": {h: {s: {k: _clean(m[k]) for k in METRIC_KEYS} for s, m in scorers.items()} for h, scorers in table.items()}}


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
    return "\n".join(lines)
