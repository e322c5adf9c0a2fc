"""Where the model-quality goals stand, in one figure and one table: per market and horizon, the model
minus the best baseline on test (the goals' bar) and minus the baseline validation picks, on the raw
returns and with each date's sector means and beta out, each with two 95% intervals.

    python experiments/goals_figure.py --market "default market=d7.json,d21.json,d22.json" \
        --market "previous market=p7.json,p21.json" --market "stocknet=sn_s0.json+sn_s1.json" --out docs/goals

Each ``--market`` is NAME=DRAWS: the market's draws joined by commas, each draw the ``seeds.py
--out`` JSON files of its runs (its seeds, pooled as ``seeds.py --markets`` pools them) joined by
"+". Writes OUT.png and OUT.json and prints the table. The numbers are ``seeds.py --markets``' own
(``against_best``, ``pooled_markets``, ``across_groups``): the dates' interval holds each run fixed
(Newey-West at lag h - 1, the draws taken as independent); the draws' interval, a t interval from
the draws' spread, is the one to read for "a market of this kind" (given with two draws or more).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import seeds

MEASURES = (("best", "the best baseline on test (the goals' bar)"), ("pick", "the baseline validation picks"))


def market_standing(draws: list[list[dict]], label: str | None = None) -> dict:
    """One market's draws (each its seeds' runs): per measure ("best", "pick"), returns ("raw",
    "neutral") and horizon, the draws' mean difference with the dates' interval (``pooled_markets``)
    and the draws' t interval (``across_groups``; None with one draw), and each draw's mean. "pick"
    is left out where a draw's runs lack the baselines' validation scores. ``label``: a progress bar
    of that name over the cells."""
    import polars as pl
    from tqdm.auto import tqdm

    frames = [[pl.read_parquet(r["frame"]) for r in rows] for rows in draws]
    neutral_ok = all(seeds.scored_without_sectors(f) for f in frames)
    picked = all(seeds.validation_pick(rows, "1d") for rows in draws)
    cells = [(m, n, h) for m, _ in MEASURES[: 1 + picked] for n in (False, True)[: 1 + neutral_ok] for h in seeds.markets_horizons(frames)]
    out = {"draws": len(draws)}
    for measure, neutral, h in tqdm(cells, desc=label, unit="cell", disable=label is None):
        each = seeds.against_each_market(frames, draws, h, neutral, measure)
        pooled, across = seeds.pooled_markets(each), seeds.across_groups(each)
        out.setdefault(measure, {}).setdefault("neutral" if neutral else "raw", {})[h] = {
            "mean": pooled["mean"], "ci95_low": pooled["ci95_low"], "ci95_high": pooled["ci95_high"],
            "draws_low": None if math.isnan(across["ci95_low"]) else across["ci95_low"],
            "draws_high": None if math.isnan(across["ci95_high"]) else across["ci95_high"],
            "each": [c["mean"] for c in each],
        }
    return out


def standing_table(standing: dict[str, dict]) -> str:
    """The standing as markdown: one table per measure, a row per market and horizon."""
    lines = []
    for measure, title in MEASURES:
        rows = [(name, s) for name, s in standing.items() if measure in s]
        if not rows:
            continue
        lines += ["", f"### The model minus {title}, test RankIC", "",
                  "| market | draws | horizon | raw returns | sector means and beta out |", "|---|---|---|---|---|"]  # fmt: skip
        for name, s in rows:
            for h in seeds.HORIZONS:
                cells = [_cell(s[measure].get(kind, {}).get(h)) for kind in ("raw", "neutral")]
                if any(cells):
                    lines.append(f"| {name} | {s['draws']} | {h} | {cells[0] or '-'} | {cells[1] or '-'} |")
    lines += ["", "Each cell: the mean over draws [the dates' 95% interval]; with two draws or more, the draws' 95% t interval after it."]
    return "\n".join(lines)


def _cell(c: dict | None) -> str:
    if c is None:
        return ""
    text = seeds.interval_cell(c)
    return text if c["draws_low"] is None else f"{text}; draws [{c['draws_low']:+.4f}, {c['draws_high']:+.4f}]"


def plot_standing(standing: dict[str, dict]):
    """Rows: the measures; columns: the markets. Per horizon the raw and the neutral difference,
    each a dot at the mean, a thick bar for the dates' interval and a thin one for the draws'."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    names = list(standing)
    measures = [(m, t) for m, t in MEASURES if any(m in s for s in standing.values())]
    fig = Figure(figsize=(4.2 * len(names) + 0.6, 3.6 * len(measures) + 0.4), constrained_layout=True)
    axes = np.atleast_2d(fig.subplots(len(measures), len(names), sharey="row", squeeze=False))
    colours = {"raw": "tab:blue", "neutral": "tab:orange"}
    for row, (measure, title) in enumerate(measures):
        for col, name in enumerate(names):
            ax, s = axes[row, col], standing[name]
            ax.axhline(0, color="grey", lw=0.8)
            for kind, shift in (("raw", -0.12), ("neutral", 0.12)):
                for i, h in enumerate(seeds.HORIZONS):
                    c = s.get(measure, {}).get(kind, {}).get(h)
                    if c is None:
                        continue
                    x = i + shift
                    if c["draws_low"] is not None:
                        ax.errorbar(x, c["mean"], yerr=[[c["mean"] - c["draws_low"]], [c["draws_high"] - c["mean"]]], fmt="none",
                                    ecolor=colours[kind], elinewidth=1, capsize=4)  # fmt: skip
                    ax.plot([x, x], [c["ci95_low"], c["ci95_high"]], color=colours[kind], lw=5, alpha=0.45, solid_capstyle="butt")
                    ax.plot(x, c["mean"], "o", color=colours[kind], ms=5)
            ax.set_xticks(range(len(seeds.HORIZONS)), seeds.HORIZONS)
            ax.set_xlim(-0.5, len(seeds.HORIZONS) - 0.5)
            ax.set_title(f"{name} ({s['draws']} draws)" if row == 0 and s["draws"] > 1 else name, fontsize=10)
            if col == 0:
                ax.set_ylabel(f"model minus\n{title}", fontsize=9)
            ax.grid(axis="y", lw=0.3, alpha=0.6)
    handles = [Line2D([], [], color=colours["raw"], marker="o", lw=0, label="raw returns"),
               Line2D([], [], color=colours["neutral"], marker="o", lw=0, label="sector means and beta out"),
               Line2D([], [], color="grey", lw=5, alpha=0.45, label="95%, the dates' noise (runs held fixed)"),
               Line2D([], [], color="grey", lw=1, label="95%, the draws' spread (t)")]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle("Test RankIC: the model minus a baseline, per horizon (at or above 0: the goal)", fontsize=11)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--market", action="append", required=True, help="NAME=DRAW[,DRAW...], a draw FILE[+FILE...]: seeds.py JSON files")
    parser.add_argument("--out", required=True, help="writes OUT.png and OUT.json")
    args = parser.parse_args()
    standing = {}
    for spec in args.market:
        name, sep, files = spec.partition("=")
        if not sep or not name or not files:
            raise SystemExit(f"--market takes NAME=DRAW[,DRAW...], a draw FILE[+FILE...], got {spec!r}")
        standing[name] = market_standing([seeds.saved_runs(draw.split("+")) for draw in files.split(",")], label=name)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(standing, indent=1))
    plot_standing(standing).savefig(out.with_suffix(".png"), dpi=110)
    print(standing_table(standing))
    print(f"\nwritten: {out.with_suffix('.png')}, {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
