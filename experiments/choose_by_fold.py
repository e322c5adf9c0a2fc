"""Two settings' runs of the same seeds, one chosen per fold on validation: what the choice is worth.

    python experiments/choose_by_fold.py --this a_s0.json a_s1.json --other b_s0.json b_s1.json

``--this`` and ``--other``: the JSON files ``experiments/seeds.py --out`` wrote for two settings of
one market, paired in order (the same seeds; their scored frames, validation's and test's, beside
them). Per run pair and fold (walk-forward runs; one fold otherwise) the setting whose forecast ranks
the fold's validation dates higher at ``--horizon`` (mean daily RankIC) is chosen, ties to
``--this``.

Two readings, both of the chosen forecasts minus ``--this``'s alone (each date's RankIC averaged
over the runs, pooled over the folds, with the Newey-West 95% interval at lag h - 1):

- validation's later half: the choice made on the first half of each fold's validation dates (in
  time) and scored on the second, so validation alone says whether choosing helps (the research
  log, the thirteenth session);
- test: the choice made on the whole of each fold's validation.

Printed per horizon, raw and with sector means and beta out, with the choices made.
"""

from __future__ import annotations

import argparse
import json

HORIZONS = ("1d", "5d", "10d", "20d")


def folds_of(frame) -> list:
    """The fold numbers of a scored frame ([None] for a run of one fold)."""
    return sorted(frame["fold"].unique().to_list()) if "fold" in frame.columns else [None]


def choices(pairs, horizon: str, halves: bool) -> list[dict]:
    """Per run pair, {fold: (True where ``this`` is chosen, the dates it is scored on or None)}: the
    setting whose validation forecast ranks the fold's dates (the first half of them with
    ``halves``) higher at ``horizon``; with ``halves`` the second half's dates come beside."""
    import numpy as np

    from seeds import _daily, fold_rows

    mean = lambda d, keep: float(np.mean([v for t, v in d.items() if t in keep]))  # noqa: E731
    picked = []
    for this, other in pairs:
        by_fold = {}
        for fold in folds_of(this["val"]):
            daily = [_daily(fold_rows(run["val"], fold), f"pred_{horizon}", f"target_{horizon}", False) for run in (this, other)]
            dates = sorted(set(daily[0]) & set(daily[1]))
            first, second = (dates[: len(dates) // 2], dates[len(dates) // 2 :]) if halves else (dates, None)
            by_fold[fold] = (mean(daily[0], set(first)) >= mean(daily[1], set(first)), second)
        picked.append(by_fold)
    return picked


def chosen_minus_this(pairs, picked, split: str, h: str, neutral: bool) -> dict:
    """Each date's RankIC at ``h`` of the chosen setting minus ``this``'s, averaged over the run pairs
    (only the dates of the choices where they are given), pooled over folds: mean and interval."""
    import numpy as np

    from seeds import _daily, fold_rows
    from atft_kedro.evaluation.metrics import difference_summary, overlap_lag

    per_pair = []
    for (this, other), by_fold in zip(pairs, picked):
        diff = {}
        for fold, (keep_this, dates) in by_fold.items():
            theirs = _daily(fold_rows(this[split], fold), f"pred_{h}", f"target_{h}", neutral)
            ours = theirs if keep_this else _daily(fold_rows(other[split], fold), f"pred_{h}", f"target_{h}", neutral)
            keep = set(ours) & set(theirs) if dates is None else set(dates) & set(ours) & set(theirs)
            diff.update({t: ours[t] - theirs[t] for t in keep})
        per_pair.append(diff)
    common = sorted(set.intersection(*(set(d) for d in per_pair)))
    return difference_summary(np.array([np.mean([d[t] for d in per_pair]) for t in common]), overlap_lag(h))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--this", nargs="+", required=True, help="seeds.py --out files of the setting kept on ties")
    parser.add_argument("--other", nargs="+", required=True, help="seeds.py --out files of the other setting, the same seeds in the same order")
    parser.add_argument("--horizon", default="1d", help="the horizon whose validation RankIC chooses")
    args = parser.parse_args()
    if len(args.this) != len(args.other):
        raise SystemExit(f"--this has {len(args.this)} runs and --other {len(args.other)}: they are paired in order")

    import polars as pl

    def load(file):
        run = json.load(open(file))[0]
        return {"seed": run["seed"], "val": pl.read_parquet(run["val_frame"]), "test": pl.read_parquet(run["frame"])}

    pairs = [(load(a), load(b)) for a, b in zip(args.this, args.other)]
    for this, other in pairs:
        for split in ("val", "test"):
            if not this[split].select("Date", "Code").equals(other[split].select("Date", "Code")):
                raise SystemExit(f"seed {this['seed']} against seed {other['seed']}: the {split} frames hold different rows")
    cell = lambda s: f"{s['mean']:+.4f} [{s['ci95_low']:+.4f}, {s['ci95_high']:+.4f}] | {s['dates']}"  # noqa: E731
    neutral_ok = all("beta_60d" in run["val"].columns and "Sector33Code" in run["val"].columns for pair in pairs for run in pair)
    for reading, halves, split in (("validation's later half, chosen on its first half", True, "val"), ("test, chosen on the whole of validation", False, "test")):
        picked = choices(pairs, args.horizon, halves)
        said = "; ".join(f"seed {p[0]['seed']}: " + ", ".join(f"fold {f}: {'this' if c[0] else 'other'}" for f, c in by_fold.items())
                         for p, by_fold in zip(pairs, picked))  # fmt: skip
        print(f"\n### {reading}: chosen minus --this\n\nchosen at {args.horizon}: {said}\n")
        print("| horizon | raw | dates | sectors and beta out | dates |\n|---|---|---|---|---|")
        for h in HORIZONS:
            if f"pred_{h}" not in pairs[0][0][split].columns:
                continue
            raw = chosen_minus_this(pairs, picked, split, h, False)
            neutral = cell(chosen_minus_this(pairs, picked, split, h, True)) if neutral_ok else "n/a | "
            print(f"| {h} | {cell(raw)} | {neutral} |")


if __name__ == "__main__":
    main()
