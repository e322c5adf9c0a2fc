"""The model against the strongest baselines over several seeds: one table with confidence intervals.

    python experiments/seeds.py --seeds 0 1 2 --out seeds.json
    python experiments/seeds.py --seeds 0 1 2 --params '{"raw": {"synthetic_market": "random_leaders"}}'
    python experiments/seeds.py --seeds 0 1 2 --params '{"source": "files", "raw": {"files_dir": "../shared/data/stocknet"}}'
    python experiments/seeds.py --report seeds.json other.json
    python experiments/seeds.py --scored run0/data run1/data run2/data --params '{"raw": {"synthetic_size": "full"}}' --out full.json
    python experiments/seeds.py --markets draw7_s0.json,draw7_s1.json draw21.json draw22.json
    python experiments/seeds.py --markets draw7_s0.json,draw7_s1.json draw21.json --neutralised
    python experiments/seeds.py --report new_s0.json new_s1.json --against old_s0.json old_s1.json
    python experiments/seeds.py --groups seeds=new_s0.json,new_s1.json:old_s0.json,old_s1.json draw21=new_d21.json:old_d21.json

Each seed (the initial weights and the order of the training dates: ``training.seed``) runs the whole
default ``kedro run`` (the pipelines' own nodes on an in-memory catalog, parameters from conf/base
with ``--params`` merged in; the evaluation's scoring called as its node calls it, to keep the
scored frame) in a process of its own with one thread, ``--jobs`` at a time. The seconds reported
are data_engineering, graph_construction and training. With ``splits.n_folds > 1`` (walk-forward,
e.g. ``--params '{"splits": {"n_folds": 3, "test_fraction": 0.45}}'`` for three test blocks the
size of the default one) every block is scored by its own fold's model and the tables pool them,
validation's blocks too (since 2026-12-04; before, the validation frame was the last fold's); the
phases' scores are the last fold's.
The baselines (ridge, LightGBM, momentum, reversal) do not depend on the seed.

The table, per horizon, on the test split: the model's RankIC per seed and its mean, the best
baseline's, and the paired per-date difference pooled over seeds (each date's model RankIC averaged
over the seeds, minus the baseline's that date) with its 95% interval (Newey-West at lag h - 1);
the same without the market and sectors (RankIC against the returns less each date's sector means
and beta part). Also each phase's best validation RankIC per seed, the graph ablation, and the
seeds' rank-averaged forecast (an ensemble of the seeds) on validation and test.

``--against`` compares two settings run on the same seeds (and markets), the runs paired in the
order given: per split and horizon, each date's RankIC averaged over the runs, ``--report``'s minus
``--against``'s, and the mean difference with its 95% interval (validation on the raw returns, and
without the market and sectors where the validation frames carry beta and sector; test both).

``--groups`` compares two settings over several groups of runs (markets, or a market's draws), each
given as [NAME=]THIS:OTHER (comma-joined JSON files, paired in order): per split and horizon each group's
difference as ``--against`` gives it, the mean over the groups with two intervals, and how many
groups lose or gain by more than their interval. The first interval combines the groups' own (each
run held fixed: the dates' noise); the second (``across groups (t)``) comes from the groups' spread,
which also carries how the setting's effect differs from draw to draw, and is the one to read for a
setting's effect on a market of the kind (wider, more so with few groups).

``--markets`` takes several independent markets (draws of the synthetic market: ``raw.synthetic_seed``),
each given as its seeds' JSON files joined by commas, and prints each market's pooled difference to
its own best baseline beside their mean, whose interval treats the markets as independent (and a
second from the markets' spread, as ``--groups`` gives), then the
same against the baseline validation picks and against each baseline on its own (no choice among
them after test is read). With
``--neutralised`` every forecast, the model's and each baseline's, has its date's sector means and
beta part taken out as the returns do before it is scored: what a sector- and beta-neutral book
would trade, so no scorer loses for bets the neutral returns do not reward.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HORIZONS = ("1d", "5d", "10d", "20d")
BASELINES = ("momentum_20d", "reversal_1d", "ridge", "lightgbm")
PROGRESS = re.compile(r"\|.*\d+/\d+ \[")  # a tqdm bar, left out of a seed's log


def keeping_every_state(store):
    """``store`` (a ``CheckpointStore``), also keeping in memory (``store.states``) every state training
    validated: each phase's start (its ``best`` of epoch -1) and each epoch's weights (its ``last``)."""
    store.states, save = [], store.save

    def save_and_keep(phase: int, kind: str, state: dict, also: tuple[str, ...] = ()):
        if "last" in (kind, *also) or state["epoch"] == -1:
            kept = {k: v for k, v in state.items() if k not in ("optimizer", "train_weights", "rng", "history")}
            store.states.append({**kept, "model": {k: t.detach().clone() for k, t in state["model"].items()}})
        return save(phase, kind, state, also)

    store.save = save_and_keep
    return store


def state_tag(state: dict) -> str:
    """A validated state's name: ``p{phase}start`` or ``p{phase}e{epoch}``."""
    phase, epoch = state["config"]["phase"], state["epoch"]
    return f"p{phase}start" if epoch == -1 else f"p{phase}e{epoch}"


def candidate_frames(states: list[dict], final: dict, out: dict, scored: dict, frames_dir: Path, seed: int, forecast: dict | None = None) -> dict:
    """Every validated state's forecasts on validation and test (``pred_{h}@{tag}``), beside the
    scored frames' targets, beta and sector, written next to them; -> their paths, the tags in
    training's order and the final model's tag (``per_horizon_best.py`` chooses among them)."""
    import polars as pl

    from atft_kedro.pipelines.evaluation import nodes

    inputs = (out["training_arrays"], out["graphs"], out["splits"], out["model_input"])
    by_tag = {state_tag(state): state for state in states}  # a tag twice (a phase trained again): the later state
    tags, paths = list(by_tag), {}
    preds = {"val": [], "test": []}
    for tag, state in by_tag.items():
        for split, predict in (("val", nodes.predict_validation), ("test", lambda *a, **k: nodes.predict_test(*a, parts=False, **k))):
            made = predict(state, *inputs, forecast=forecast)
            preds[split].append(made.select("Date", "Code", *(pl.col(c).alias(f"{c}@{tag}") for c in made.columns if c.startswith("pred_"))))
    for split, frame in scored.items():
        beside = frame.select("Date", "Code", *(c for c in frame.columns if c.startswith("target_") or c in ("beta_60d", "Sector33Code")))
        for made in preds[split]:
            beside = beside.join(made, on=["Date", "Code"], how="left", maintain_order="left")
        paths[split] = str(frames_dir / f"seed{seed}_states{'_val' if split == 'val' else ''}.parquet")
        beside.write_parquet(paths[split])
    return {"val_frame": paths["val"], "frame": paths["test"], "tags": tags, "final": state_tag(final)}


def run_seed(seed: int, overrides: dict, frames_dir: Path, states: bool = False) -> dict:
    """One whole run; -> its metrics, the phases' best validation RankIC, and its seconds. The
    evaluation's scored frame (predictions beside every baseline) goes to ``frames_dir``; with
    ``states`` (one fold only) every state training validated is also kept and its forecasts
    written beside it (``candidate_frames``)."""
    from atft_kedro.evaluation.evaluate import EvaluationConfig, evaluate_predictions
    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.pipelines.evaluation import nodes
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory
    from atft_kedro.training.checkpoints import CheckpointStore

    params = project_parameters(overrides)
    params["training"] = {**params["training"], "seed": seed}
    t0 = time.perf_counter()
    if states and int(params["splits"].get("n_folds", 1)) > 1:
        raise SystemExit("--states takes runs of one fold (splits.n_folds 1)")
    with tempfile.TemporaryDirectory() as tmp:
        store = keeping_every_state(CheckpointStore(tmp)) if states else CheckpointStore(tmp)
        out = run_in_memory(["data_engineering", "graph_construction", "training"], params, {"checkpoints": store})
        last = int(params["splits"].get("n_folds", 1)) - 1  # walk-forward: the last fold's phases
        bests = {p: store.fold(last).load(p, "best") for p in store.fold(last).phases()}
        kept = {str(p): float(best["best"]) for p, best in bests.items()}  # a phase's start counts when no epoch beat it
        starts = bests[max(bests)].get("starts", {})  # where validation started the linear paths
        seconds = time.perf_counter() - t0
        # the evaluation pipeline's nodes, with the scored frame kept (the evaluate node reports it);
        # walk-forward (splits.n_folds > 1): each fold's test block by its own checkpoint
        inputs = (out["model"], out["training_arrays"], out["graphs"], out["splits"], out["model_input"])
        walk_forward = {"checkpoints": store, "market_features": out["market_features"], "normalisation": params["normalisation"],
                        "forecast": params["forecast"]}  # fmt: skip
        predictions = nodes.predict_test(*inputs, **walk_forward)
        shuffled = nodes.predict_test_random_graph(*inputs, params["evaluation"], **walk_forward)
        # the same models' validation forecasts, for choices on validation (each fold's block by its own model)
        val = nodes.predict_validation(*inputs, **walk_forward)
    result = evaluate_predictions(
        predictions, shuffled, out["features"], out["model_input"], out["oracle_returns"], out["splits"],
        stock_feature_names(out["feature_manifest"]), EvaluationConfig.from_params(params["evaluation"]), val,
    )  # fmt: skip
    scored_frame(result.frame).write_parquet(frames_dir / f"seed{seed}.parquet")
    val = val.join(beta_and_sector(out["features"], out["model_input"]), on=["Date", "Code"], how="left", maintain_order="left")
    val.write_parquet(frames_dir / f"seed{seed}_val.parquet")  # scored without market and sectors too
    kept_states = candidate_frames(store.states, out["model"], out, {"val": val, "test": result.frame}, frames_dir, seed,
                                  params["forecast"]) if states else None  # fmt: skip
    return {"seed": seed, "metrics": result.document, "phase_val": kept, "starts": starts, "seconds": round(seconds, 1), "frame": str(frames_dir / f"seed{seed}.parquet"),
            "val_frame": str(frames_dir / f"seed{seed}_val.parquet"), "states": kept_states}  # fmt: skip


def scored_frame(frame):
    """The columns of an evaluation's scored frame (``Evaluation.frame``) that a run keeps: every
    scorer's forecast, the targets, each row's beta and sector and, walk-forward, its fold."""
    keep = ["Date", "Code", "beta_60d", "Sector33Code"] + [c for c in frame.columns if c.startswith(("pred_", "part_", "target_", "ridge_", "lightgbm_", "blend_", "oracle_"))]
    keep += ["fold"] if "fold" in frame.columns else []  # walk-forward: which fold scored each row
    return frame.select(*keep, "momentum_20d", "reversal_1d")


def beta_and_sector(features, model_input):
    """Each row's ``beta_60d`` (of the features) and ``Sector33Code`` (of the model input), what a
    frame needs to be scored with sector means and beta out of the returns."""
    return features.select("Date", "Code", "beta_60d").join(model_input.select("Date", "Code", "Sector33Code"), on=["Date", "Code"])


def _daily(frame, score: str, target: str, neutral: bool, min_stocks: int = 20) -> dict:
    """{date: RankIC} of one scorer, against raw or neutral (sector means and beta out) targets."""
    from atft_kedro.evaluation.metrics import daily_scores, neutral_daily

    if neutral:
        d = neutral_daily(frame, score, target, "beta_60d", "Sector33Code", min_stocks)
        return dict(zip(d["Date"].to_list(), d["rank_ic_sector_beta_neutral"].to_numpy()))
    d = daily_scores(frame, score, target, min_stocks)
    return dict(zip(d.dates, d.rank_ic))


def fold_rows(frame, fold):
    """A scored frame's rows of walk-forward fold ``fold`` (the whole frame for None, a run of one fold)."""
    import polars as pl

    return frame if fold is None else frame.filter(pl.col("fold") == fold)


def _rank_average(frames, h: str):
    """The seeds' forecasts of horizon ``h`` as one: per date, the mean over seeds of each stock's
    rank among that date's forecasts (a RankIC depends on ranks only); the first frame's target."""
    import polars as pl

    ranks = [f.select("Date", "Code", pl.col(f"pred_{h}").rank().over("Date").alias(f"r{i}")) for i, f in enumerate(frames)]
    merged = frames[0].select("Date", "Code", f"target_{h}")
    for r in ranks:
        merged = merged.join(r, on=["Date", "Code"], how="inner")
    return merged.with_columns(pl.mean_horizontal(*(f"r{i}" for i in range(len(frames)))).alias(f"pred_{h}"))


def ensemble_lines(val_frames, test_frames) -> list[str]:
    """The seeds' rank-averaged forecast (a seed ensemble) against the seeds one by one: mean daily
    RankIC on validation (where a choice is made) and on test, per horizon."""
    mean = lambda d: float(np.mean(list(d.values()))) if d else float("nan")  # noqa: E731
    lines = ["### the seeds' rank-averaged forecast (an ensemble of the seeds) against each seed", "",
             "| horizon | split | each seed | seeds' mean | ensemble | ensemble - seeds' mean |", "|---|---|---|---|---|---|"]  # fmt: skip
    for h in HORIZONS:
        if f"pred_{h}" not in val_frames[0].columns:
            continue
        for split, frames in (("validation", val_frames), ("test", test_frames)):
            each = [mean(_daily(f, f"pred_{h}", f"target_{h}", False)) for f in frames]
            together = mean(_daily(_rank_average(frames, h), f"pred_{h}", f"target_{h}", False))
            lines.append(f"| {h} | {split} | {', '.join(f'{x:.4f}' for x in each)} | {np.mean(each):.4f} | {together:.4f} | "
                         f"{together - np.mean(each):+.4f} |")  # fmt: skip
    return lines


def scored_daily(frames, h: str, neutral: bool) -> tuple[list[dict], dict[str, dict]]:
    """Horizon ``h``'s daily RankIC on the scored test frames (one per seed): the model's per seed,
    and every baseline's (from the first frame: the baselines do not depend on the seed)."""
    target = f"target_{h}"
    model = [_daily(f, f"pred_{h}", target, neutral) for f in frames]
    return model, {b: _daily(frames[0], _column(b, h), target, neutral) for b in BASELINES}


def _column(baseline: str, h: str) -> str:
    """A baseline's forecast column in the scored frames at horizon ``h``."""
    return f"{baseline}_{h}" if baseline in ("ridge", "lightgbm") else baseline


def paired_against(model: list[dict], against: dict, h: str) -> dict:
    """The seeds' mean daily RankIC minus ``against``'s, per date on the dates all scored -> its
    mean and Newey-West interval (``difference_summary`` at lag h - 1)."""
    from atft_kedro.evaluation.metrics import difference_summary, overlap_lag

    dates = sorted(set.intersection(*(set(m) for m in model), set(against)))
    return difference_summary(np.array([np.mean([m[d] for m in model]) - against[d] for d in dates]), overlap_lag(h))


def against_best(frames, h: str, neutral: bool, pick: dict | None = None) -> dict:
    """The model (one scored frame per seed) against the baseline with the best test mean at horizon
    ``h`` (or against ``pick``, ``validation_pick``'s: walk-forward, each fold's rows against its
    fold's pick): each seed's mean daily RankIC, every baseline's, the compared one's name ("best")
    and mean, and the paired per-date difference (the seeds' mean that date minus the baseline's)
    with its Newey-West interval."""
    model, base = scored_daily(frames, h, neutral)
    mean = lambda d: float(np.mean(list(d.values()))) if d else float("nan")  # noqa: E731
    if pick is None:
        best = max(BASELINES, key=lambda b: mean(base[b]))
        against = base[best]
    else:
        best, against = pick_name(pick), {}
        for fold, name in pick.items():
            against.update(_daily(fold_rows(frames[0], fold), _column(name, h), f"target_{h}", neutral))
    return {"per_seed": [mean(m) for m in model], "baselines": {b: mean(d) for b, d in base.items()}, "best": best,
            "baseline": mean(against), **paired_against(model, against, h)}  # fmt: skip


def markets_horizons(frames: list[list]) -> list[str]:
    """The horizons every market's scored frames forecast (each market's first frame read)."""
    return [h for h in HORIZONS if all(f"pred_{h}" in f[0].columns for f in frames)]


def against_each_market(frames, markets: list[list[dict]], h: str, neutral: bool, against: str) -> list[dict]:
    """``against_best`` for each market (its scored frames, its runs): against the best baseline on
    test (``against`` "best") or against the baseline its validation picks ("pick")."""
    return [against_best(f, h, neutral, None if against == "best" else validation_pick(rows, h)) for f, rows in zip(frames, markets)]


def validation_pick(rows: list[dict], h: str) -> dict | None:
    """The baseline with the best validation RankIC at ``h`` in these runs' metrics, {None: name}, or
    walk-forward {fold: name}, each fold's own (``evaluate.validation_picks``; the same in every run of
    one market: the baselines do not depend on the training seed); None for runs recorded before
    every baseline's validation RankIC was."""
    from atft_kedro.evaluation.evaluate import validation_picks

    fitted = [r["metrics"].get("baselines", {}) for r in rows]
    if not all(set(BASELINES) <= set(f) for f in fitted):
        return None
    picks = [{fold: name for fold, (name, _) in validation_picks(f, h).items()} for f in fitted]
    if any(p != picks[0] for p in picks):
        raise SystemExit(f"the runs' baselines pick differently at {h} on validation ({picks}): runs of different markets?")
    return picks[0]


def pick_name(pick: dict) -> str:
    """A validation pick as the tables write it: the baseline, or each fold's."""
    names = set(pick.values())
    return names.pop() if len(names) == 1 else ", ".join(f"fold{fold} {name}" for fold, name in pick.items())


def neutralised_forecasts(frame):
    """``frame`` with every forecast (the model's ``pred_*``, the baselines') less its date's sector
    means and beta part, as ``sector_beta_residual`` takes them out of the returns."""
    from atft_kedro.features.targets import sector_beta_residual

    scorers = [c for c in frame.columns if c.startswith(("pred_", "ridge_", "lightgbm_")) or c in ("momentum_20d", "reversal_1d")]
    return frame.with_columns(sector_beta_residual(c, "beta_60d", "Sector33Code").alias(c) for c in scorers)


def markets_report(markets: list[list[dict]], neutralised: bool = False) -> str:
    """Several independent markets (e.g. draws of the synthetic market), each its seeds' runs: per
    horizon, each market's pooled difference to its best baseline, and their mean with a 95%
    interval that treats the markets as independent (the standard error of a mean of independent
    differences, each from its market's Newey-West standard error), and the mean's interval from the
    markets' spread (``across_groups``: how the markets differ counted too). ``neutralised``:
    every forecast scored as ``neutralised_forecasts`` leaves it."""
    import polars as pl

    frames = [[pl.read_parquet(r["frame"]) for r in rows] for rows in markets]
    if neutralised:
        if not all(scored_without_sectors(f) for f in frames):
            raise SystemExit("--neutralised needs the frames' beta_60d and Sector33Code (runs scored with sectors and beta out)")
        frames = [[neutralised_forecasts(f) for f in fs] for fs in frames]
    lines = ["every forecast with its date's sector means and beta part out (--neutralised)"] if neutralised else []
    picked = all(validation_pick(rows, "1d") for rows in markets)
    for against, neutral in [(a, n) for a in ("best", "pick")[: 1 + picked] for n in (False, True)]:
        title = "test RankIC, sector means and beta out of the returns" if neutral else "test RankIC"
        baseline = "best baseline on test" if against == "best" else "the baseline validation picks"
        lines += ["", f"### model - {baseline}, per market, {title}", "",
                  "| horizon | " + " | ".join(f"market {i}" for i in range(len(markets))) + " | mean | 95% interval | across markets (t) | lower bound above 0 |",
                  "|---|" + "---|" * (len(markets) + 4)]  # fmt: skip
        for h in markets_horizons(frames):
            each = against_each_market(frames, markets, h, neutral, against)
            cells = [interval_cell(c) + (f" {c['best']}" if against == "pick" else "") for c in each]
            lines.append(f"| {h} | {' | '.join(cells)} | {_markets_mean(each)} | {_across_cell(each)} | {sum(c['ci95_low'] > 0 for c in each)} of {len(each)} |")
    for neutral in (False, True):  # no selection: each baseline on its own, the same in every market
        title = "test RankIC, sector means and beta out of the returns" if neutral else "test RankIC"
        lines += ["", f"### model - each baseline, the markets' mean and 95% interval, {title}", "",
                  "| horizon | " + " | ".join(f"{b} | 95% interval" for b in BASELINES) + " |", "|---|" + "---|---|" * len(BASELINES)]  # fmt: skip
        for h in markets_horizons(frames):
            scored = [scored_daily(f, h, neutral) for f in frames]  # a date's RankIC is its own rows': walk-forward blocks need no split
            cells = [_markets_mean([paired_against(model, base[b], h) for model, base in scored]) for b in BASELINES]
            lines.append(f"| {h} | {' | '.join(cells)} |")
    return "\n".join(["markets: " + "; ".join(f"{i}: seeds {[r['seed'] for r in rows]}" for i, rows in enumerate(markets)), *lines])


def pooled_markets(each: list[dict]) -> dict:
    """Independent markets' paired differences (``against_best``'s or ``paired_settings``') as one:
    their mean and a 95% interval from the standard error of a mean of independent differences
    (each market's Newey-West standard error)."""
    mean = float(np.mean([c["mean"] for c in each]))
    se = float(np.sqrt(sum(c["se"] ** 2 for c in each))) / len(each)
    return {"mean": mean, "se": se, "ci95_low": mean - 1.96 * se, "ci95_high": mean + 1.96 * se}


def across_groups(each: list[dict]) -> dict:
    """The groups' differences taken as a sample of draws: their mean and a 95% t interval (n - 1
    degrees of freedom) from their spread. Unlike ``pooled_markets``, which holds each run fixed
    and counts only the dates' noise, the spread also carries how an effect differs from draw to
    draw: a setting moves each draw's later epochs its own way, by more than the dates' intervals
    say (the research log, the thirty-fourth session)."""
    from scipy import stats

    means = np.array([c["mean"] for c in each])
    mean = float(means.mean())
    half = float(stats.t.ppf(0.975, len(means) - 1) * means.std(ddof=1) / np.sqrt(len(means))) if len(means) > 1 else math.nan
    return {"mean": mean, "ci95_low": mean - half, "ci95_high": mean + half}


def _markets_mean(each: list[dict]) -> str:
    """``pooled_markets`` as a table's two cells, the mean and its interval."""
    c = pooled_markets(each)
    return f"{c['mean']:+.4f} | [{c['ci95_low']:+.4f}, {c['ci95_high']:+.4f}]"


def _across_cell(each: list[dict]) -> str:
    """``across_groups``' interval as a table's cell."""
    c = across_groups(each)
    return f"[{c['ci95_low']:+.4f}, {c['ci95_high']:+.4f}]"


def interval_cell(c: dict) -> str:
    """A paired difference (``difference_summary``'s keys) as one cell: its mean and 95% interval."""
    return f"{c['mean']:+.4f} [{c['ci95_low']:+.4f}, {c['ci95_high']:+.4f}]"


def scored_without_sectors(frames) -> bool:
    """Whether every frame has the columns the tables with sectors and beta out need."""
    return all({"beta_60d", "Sector33Code"} <= set(f.columns) for f in frames)


def settings_report(rows: list[dict], others: list[dict]) -> str:
    """Two settings on the same seeds, ``rows`` and ``others`` paired in order: per split (validation,
    test), returns (raw; sectors and beta out) and horizon, the mean over dates of the runs' mean
    daily RankIC, each setting's, and of their difference, with its Newey-West 95% interval."""
    import polars as pl

    if len(rows) != len(others):
        raise SystemExit(f"--against needs as many runs as --report ({len(others)} against {len(rows)}), paired in order")
    lines = ["runs, this setting against the other: " + ", ".join(f"seed {a['seed']} vs {b['seed']}" for a, b in zip(rows, others))]
    for split, key in (("validation", "val_frame"), ("test", "frame")):
        mine, theirs = ([pl.read_parquet(r[key]) for r in group] for group in (rows, others))
        for neutral in (False, True):
            if neutral and not scored_without_sectors(mine + theirs):
                continue
            title = f"{split} RankIC" + (", sector means and beta out of the returns" if neutral else "")
            lines += ["", f"### {title}: this setting minus the other", "", "| horizon | this | other | difference | 95% interval | dates |", "|---|---|---|---|---|---|"]
            for h in HORIZONS:
                if not all(f"pred_{h}" in f.columns for f in mine + theirs):
                    continue
                c = paired_settings(mine, theirs, h, neutral)
                lines.append(f"| {h} | {c['this']:.4f} | {c['other']:.4f} | {c['mean']:+.4f} | "
                             f"[{c['ci95_low']:+.4f}, {c['ci95_high']:+.4f}] | {c['dates']} |")  # fmt: skip
    return "\n".join(lines)


def paired_settings(mine, theirs, h: str, neutral: bool) -> dict:
    """Two settings' scored frames of the same seeds (paired in order) at horizon ``h``: each date's
    RankIC averaged over the runs, each setting's mean, and the difference's mean and Newey-West
    95% interval (lag h - 1)."""
    from atft_kedro.evaluation.metrics import difference_summary, overlap_lag

    a, b = ([_daily(f, f"pred_{h}", f"target_{h}", neutral) for f in frames] for frames in (mine, theirs))
    dates = sorted(set.intersection(*(set(d) for d in a + b)))
    this, other = (np.array([np.mean([d[t] for d in runs]) for t in dates]) for runs in (a, b))  # each date's mean over the runs
    return {"this": float(this.mean()), "other": float(other.mean()), **difference_summary(this - other, overlap_lag(h))}


def groups_report(groups: list[tuple[list[dict], list[dict]]], names: list[str] | None = None) -> str:
    """Two settings compared over several groups of runs (markets, or draws of one), each group its
    runs of this setting and of the other, paired in order: per split, returns and horizon, each
    group's difference with its 95% interval, the mean over the groups with its interval (the
    groups independent, as ``_markets_mean`` takes markets; the runs held fixed), the same mean's
    interval from the groups' spread (``across_groups``: how the groups differ counted too), and
    how many groups lose or gain by more than their noise (interval below or above 0)."""
    import polars as pl

    names = names or [f"group {i}" for i in range(len(groups))]
    lines = ["groups: " + "; ".join(f"{name}: {len(mine)} runs" for name, (mine, _) in zip(names, groups))]
    for split, key in (("validation", "val_frame"), ("test", "frame")):
        frames = [tuple([pl.read_parquet(r[key]) for r in runs] for runs in pair) for pair in groups]
        for neutral in (False, True):
            if neutral and not scored_without_sectors([f for pair in frames for runs in pair for f in runs]):
                continue
            title = f"{split} RankIC" + (", sector means and beta out of the returns" if neutral else "")
            lines += ["", f"### {title}: this setting minus the other, per group", "",
                      "| horizon | " + " | ".join(names) + " | mean over groups | 95% interval | across groups (t) | groups below / above |",
                      "|---|" + "---|" * (len(groups) + 4)]  # fmt: skip
            for h in HORIZONS:
                if not all(f"pred_{h}" in f.columns for pair in frames for runs in pair for f in runs):
                    continue
                each = [paired_settings(mine, theirs, h, neutral) for mine, theirs in frames]
                cells = [interval_cell(c) for c in each]
                lines.append(f"| {h} | {' | '.join(cells)} | {_markets_mean(each)} | {_across_cell(each)} | "
                             f"{sum(c['ci95_high'] < 0 for c in each)} / {sum(c['ci95_low'] > 0 for c in each)} |")  # fmt: skip
    return "\n".join(lines)


def scored_runs(run_dirs: list[Path], overrides: dict, frames_dir: Path) -> list[dict]:
    """Finished ``kedro run``s (each of a training seed) as this script's rows, for ``--report``.
    A run directory holds what the run wrote under ``data/``: ``07_model_output/`` (predictions and
    validation_predictions; the first run's random_graph_predictions too, which the evaluation's
    scoring takes) and ``08_reporting/metrics.json``. The data are made again from ``overrides``
    (the runs' own ``--params``), checked against each run's data fingerprint, and each run's test
    forecasts are scored beside the evaluation's baselines, fitted once (they do not depend on the
    training seed). For runs too large to repeat here, such as the full-size market's (an hour a
    seed). The runs are of one setting, each of its own seed."""
    import polars as pl

    from atft_kedro.evaluation.evaluate import EvaluationConfig, evaluate_predictions
    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory

    params = project_parameters(overrides)
    out = run_in_memory(["data_engineering"], params)
    keys, baselines, rows = beta_and_sector(out["features"], out["model_input"]), None, []
    for run in map(Path, run_dirs):
        made = {name: run / "07_model_output" / f"{name}.parquet" for name in ("predictions", "random_graph_predictions", "validation_predictions")}
        needed = [*made.values(), run / "08_reporting" / "metrics.json"]
        needed = needed if baselines is None else [path for path in needed if path.name != "random_graph_predictions.parquet"]  # the first run's only
        missing = [str(path) for path in needed if not path.exists()]
        if missing:
            raise SystemExit(f"{run} is not a finished run's data directory: {', '.join(missing)} missing")
        metrics = json.loads((run / "08_reporting" / "metrics.json").read_text())
        theirs, mine = metrics.get("provenance", {}).get("data", {}).get("id"), out["data_fingerprint"]["id"]
        if theirs != mine:
            raise SystemExit(f"{run} was run on other data (fingerprint {theirs}) than --params make ({mine}): give the run's own --params")
        test, val = (pl.read_parquet(made[name]) for name in ("predictions", "validation_predictions"))
        if baselines is None:
            shuffled = pl.read_parquet(made["random_graph_predictions"])
            result = evaluate_predictions(test, shuffled, out["features"], out["model_input"], out["oracle_returns"], out["splits"],
                                          stock_feature_names(out["feature_manifest"]), EvaluationConfig.from_params(params["evaluation"]), val)  # fmt: skip
            scorers = [c for c in result.frame.columns if c.startswith(("ridge_", "lightgbm_", "oracle_"))] + ["momentum_20d", "reversal_1d"]
            baselines = result.frame.select("Date", "Code", "beta_60d", "Sector33Code", *scorers)
        seed = metrics.get("provenance", {}).get("model", {}).get("seed", len(rows))
        if seed in [r["seed"] for r in rows]:
            raise SystemExit(f"{run} is a second run of training seed {seed}: score each setting's runs with an --out of its own")
        own = test.select("Date", "Code", *(c for c in test.columns if c.startswith(("pred_", "part_", "target_"))))
        paths = {"frame": frames_dir / f"seed{seed}.parquet", "val_frame": frames_dir / f"seed{seed}_val.parquet"}
        own.join(baselines, on=["Date", "Code"], how="left", maintain_order="left").write_parquet(paths["frame"])
        val = val.drop("beta_60d", "Sector33Code", strict=False)
        val.join(keys, on=["Date", "Code"], how="left", maintain_order="left").write_parquet(paths["val_frame"])
        rows.append({"seed": seed, "metrics": metrics, "phase_val": {}, "starts": {}, "seconds": None, **{k: str(v) for k, v in paths.items()}})
    return rows


def report(rows: list[dict]) -> str:
    import polars as pl

    frames = [pl.read_parquet(r["frame"]) for r in rows]
    if any(r["seconds"] is None for r in rows):  # --scored: finished kedro runs
        lines = [f"seeds {[r['seed'] for r in rows]}; finished runs, scored again", ""]
    else:
        times = ", ".join(f"{r['seconds']:.0f}" for r in rows)
        lines = [f"seeds {[r['seed'] for r in rows]}; data, graphs and training took {times} s (one thread each)", ""]
    phases = sorted({p for r in rows for p in r["phase_val"]})
    if phases:  # none for --scored runs
        lines.append("validation RankIC (early-stopping metric) of each phase's best checkpoint, seeds in order: "
                     + "; ".join(f"phase {p}: " + ", ".join(f"{r['phase_val'].get(p, float('nan')):.4f}" for r in rows) for p in phases))  # fmt: skip
    for neutral in (False, True):
        title = "test RankIC, sector means and beta out of the returns" if neutral else "test RankIC"
        lines += ["", f"### {title}", "",
                  "| horizon | model per seed | model mean | ridge | lightgbm | best baseline | model - best, pooled | 95% interval | dates |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for h in HORIZONS:
            if f"pred_{h}" not in frames[0].columns:
                continue
            c = against_best(frames, h, neutral)
            lines.append(
                f"| {h} | {', '.join(f'{x:.4f}' for x in c['per_seed'])} | {np.mean(c['per_seed']):.4f} | {c['baselines']['ridge']:.4f} | "
                f"{c['baselines']['lightgbm']:.4f} | {c['best']} {c['baselines'][c['best']]:.4f} | {c['mean']:+.4f} | "
                f"[{c['ci95_low']:+.4f}, {c['ci95_high']:+.4f}] | {c['dates']} |"
            )
    if validation_pick(rows, "1d"):
        lines += ["", "### model - the baseline validation picks (the best validation RankIC at that horizon)", "",
                  "| horizon | validation picks | returns | baseline on test | model - baseline, pooled | 95% interval | dates |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for h in [h for h in HORIZONS if f"pred_{h}" in frames[0].columns]:
            for neutral in (False, True):
                c = against_best(frames, h, neutral, validation_pick(rows, h))
                lines.append(f"| {h} | {c['best']} | {'sector means and beta out' if neutral else 'raw'} | {c['baseline']:.4f} | "
                             f"{c['mean']:+.4f} | [{c['ci95_low']:+.4f}, {c['ci95_high']:+.4f}] | {c['dates']} |")  # fmt: skip
    lines += blend_lines(frames)
    val_frames = [pl.read_parquet(r["val_frame"]) for r in rows] if all("val_frame" in r for r in rows) else None
    if val_frames and len(rows) > 1:
        lines += ["", *ensemble_lines(val_frames, frames)]
    lines += parts_lines(val_frames, frames)
    ablation = [r["metrics"].get("graph_ablation", {}) for r in rows]
    if all(ablation):
        lines += ["", "graph ablation (test RankIC with the graph minus with random endpoints), seeds in order: "
                  + "; ".join(f"{h}: " + ", ".join(f"{a[h]['difference']['mean']:+.4f}" for a in ablation) for h in ablation[0])]  # fmt: skip
    return "\n".join(lines)


def blend_lines(frames) -> list[str]:
    """The evaluation's blend of the model and LightGBM (``blend_{h}``, in runs with ``"evaluation":
    {"blend": true}`` in their parameters; other runs: nothing) against each, per horizon, raw and
    with sector means and beta out: its test RankIC per seed and the paired per-date differences
    (each date's RankIC averaged over the seeds) with their intervals."""
    from atft_kedro.evaluation.metrics import difference_summary, overlap_lag

    horizons = [h for h in HORIZONS if f"blend_{h}" in frames[0].columns]
    if not horizons:
        return []
    lines = ["", "### the model and LightGBM blended (LightGBM's weight chosen on validation)", "",
             "| horizon | returns | blend per seed | blend mean | blend - model, pooled | 95% interval | blend - lightgbm | 95% interval |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    cell = lambda d: f"{d['mean']:+.4f} | [{d['ci95_low']:+.4f}, {d['ci95_high']:+.4f}]"  # noqa: E731
    for h in horizons:
        for neutral in (False, True):
            blend, model = ([_daily(f, f"{c}_{h}", f"target_{h}", neutral) for f in frames] for c in ("blend", "pred"))
            lightgbm = _daily(frames[0], f"lightgbm_{h}", f"target_{h}", neutral)
            days = sorted(set.intersection(*(set(d) for d in blend + model), set(lightgbm)))
            b, m = (np.array([np.mean([d[t] for d in side]) for t in days]) for side in (blend, model))
            g = np.array([lightgbm[t] for t in days])
            lag = overlap_lag(h)
            lines.append(f"| {h} | {'sector means and beta out' if neutral else 'raw'} | {', '.join(f'{np.mean(list(d.values())):.4f}' for d in blend)} | "
                         f"{b.mean():.4f} | {cell(difference_summary(b - m, lag))} | {cell(difference_summary(b - g, lag))} |")  # fmt: skip
    return lines


def parts_lines(val_frames, test_frames) -> list[str]:
    """What each path of the forecast adds (``evaluate.forecast_parts``) on validation and test, per
    horizon: each seed's, and their mean; nothing for a split whose frames lack the paths (runs saved
    without them; ``val_frames`` None: runs saved without validation frames)."""
    from atft_kedro.evaluation.evaluate import forecast_parts
    from atft_kedro.evaluation.metrics import daily_scores

    lines = []
    for split, frames in (("validation", val_frames or []), ("test", test_frames)):
        if not frames or not all(any(c.startswith("part_") for c in f.columns) for f in frames):
            continue
        lines += ["", f"### what each path of the forecast adds, {split} (RankIC of the forecast minus the forecast without the path; "
                  "in brackets its share of the forecast's spread)", "", "| horizon | path | per seed | mean |", "|---|---|---|---|"]  # fmt: skip
        for h in [h for h in HORIZONS if f"pred_{h}" in frames[0].columns]:
            each = [forecast_parts(f, h, daily_scores(f, f"pred_{h}", f"target_{h}"), 20) for f in frames]
            for path in dict.fromkeys(p for parts in each for p in parts):
                cells = [parts.get(path) for parts in each]
                shown = ", ".join("off" if c is None else f"{c['adds']['mean']:+.4f} ({c['spread']:.2f})" for c in cells)
                lines.append(f"| {h} | {path} | {shown} | {np.mean([0.0 if c is None else c['adds']['mean'] for c in cells]):+.4f} |")
    return lines


def saved_runs(files) -> list[dict]:
    """The runs of several JSON files that this script wrote (``--out``), in order."""
    return [r for f in files for r in json.loads(Path(f).read_text())]


def output_paths(out: str | None) -> tuple[Path, Path]:
    """Where the runs' JSON goes (``--out``, or a new temporary directory's runs.json) and the
    directory of their scored frames beside it, made."""
    path = Path(out) if out else Path(tempfile.mkdtemp(prefix="seeds_")) / "runs.json"
    frames = path.with_suffix("")
    frames.mkdir(parents=True, exist_ok=True)
    return path, frames


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON")
    parser.add_argument("--jobs", type=int, default=2, help="seeds run side by side (one thread each)")
    parser.add_argument("--out", default=None, help="write the runs' JSON here (and the scored frames beside it)")
    parser.add_argument("--report", nargs="+", default=None, help="merge these JSON files into one table")
    parser.add_argument("--against", nargs="+", default=None, help="with --report: the same seeds of another setting, paired "
                        "in order: the per-date difference on validation and test")  # fmt: skip
    parser.add_argument("--markets", nargs="+", default=None, help="one independent market per argument (its seeds' JSON "
                        "files joined by commas): each market's difference to its best baseline and their mean")  # fmt: skip
    parser.add_argument("--neutralised", action="store_true", help="with --markets: every forecast less its date's sector "
                        "means and beta part before it is scored")  # fmt: skip
    parser.add_argument("--groups", nargs="+", default=None, help="one group per argument, [NAME=]THIS:OTHER, each side a "
                        "comma-joined list of JSON files (the same seeds or draws in order): each group's difference and their mean")  # fmt: skip
    parser.add_argument("--mlflow", default="sqlite:///mlflow.db", help="MLflow tracking URI for the runs ('' : none); "
                        "one parent run, a nested run per seed")  # fmt: skip
    parser.add_argument("--states", action="store_true", help="also keep every state training validated (each phase's start "
                        "and epochs) and write their forecasts beside the frames, for per_horizon_best.py (one fold only)")  # fmt: skip
    parser.add_argument("--scored", nargs="+", default=None, help="finished kedro runs' data directories (one a seed, "
                        "run with --params): their forecasts scored beside the baselines, as --report prints and --out keeps")  # fmt: skip
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child process: one seed
    parser.add_argument("--frames", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:  # the run's log, plain, on stderr: the parent keeps it beside the frames
        from _log import plain_log

        plain_log()
        print("RESULT " + json.dumps(run_seed(args.one, json.loads(args.params), Path(args.frames), args.states)), flush=True)
        return
    if args.neutralised and not args.markets:
        raise SystemExit("--neutralised goes with --markets")
    if args.groups:
        named = [group.split("=", 1) if "=" in group.split(":", 1)[0] else [f"group {i}", group] for i, group in enumerate(args.groups)]
        pairs = [tuple(saved_runs(side.split(",")) for side in group.split(":")) for _, group in named]
        if any(len(pair) != 2 or len(pair[0]) != len(pair[1]) for pair in pairs):
            raise SystemExit("--groups takes [NAME=]THIS:OTHER per group, as many runs on each side, paired in order")
        print(groups_report(pairs, [name for name, _ in named]))
        return
    if args.markets:
        print(markets_report([saved_runs(group.split(",")) for group in args.markets], args.neutralised))
        return
    from atft_kedro.pipelines.in_memory import parameters_from_argument

    parameters_from_argument(parser, args.params)  # before any seed starts: what a kedro run refuses, as the usage error
    if args.scored:
        out, frames = output_paths(args.out)
        rows = scored_runs(args.scored, json.loads(args.params), frames)
        out.write_text(json.dumps(rows))
        print(f"runs: {out}")
    elif args.report:
        rows = saved_runs(args.report)
        if args.against:
            print(settings_report(rows, saved_runs(args.against)))
            return
    else:
        out, frames = output_paths(args.out)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "KEDRO_DISABLE_TELEMETRY": "true"}

        def child(seed: int) -> dict:
            cmd = [sys.executable, __file__, "--one", str(seed), "--params", args.params, "--frames", str(frames)] + ["--states"] * args.states
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            lines = done.stdout.splitlines()
            result = [line for line in lines if line.startswith("RESULT ")]
            logged = [part.rsplit("\r", 1)[-1] for part in [*lines, *done.stderr.splitlines()]]  # a progress bar's last redraw
            (frames / f"seed{seed}.log").write_text("".join(f"{line}\n" for line in logged if line.strip() and not PROGRESS.search(line)
                                                            and not line.startswith("RESULT ")))  # fmt: skip
            if done.returncode or not result:
                raise RuntimeError(f"seed {seed} failed:\n{done.stderr[-3000:]}")
            print(f"seed {seed} done", flush=True)
            return json.loads(result[-1][len("RESULT "):])

        with ThreadPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(child, args.seeds))
        out.write_text(json.dumps(rows, indent=1))
        print(f"runs written to {out}")
    table = report(sorted(rows, key=lambda r: r["seed"]))
    print(table)
    if args.mlflow and not (args.report or args.scored):
        log_to_mlflow(rows, table, args, args.mlflow)


def log_to_mlflow(rows: list[dict], table: str, args, uri: str) -> None:
    """A parent run (the command, the table) with a nested run per seed (its metrics.json flattened,
    each phase's kept validation RankIC, its seconds), in the project's MLflow store."""
    import mlflow

    from atft_kedro.tracking import flatten

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("atft_kedro experiments")
    with mlflow.start_run(run_name=f"seeds {' '.join(map(str, args.seeds))}"):
        mlflow.log_params({"experiment": "seeds", "seeds": " ".join(map(str, args.seeds)), "params": args.params[:500]})
        mlflow.log_text(table, "seeds.md")
        for row in sorted(rows, key=lambda r: r["seed"]):
            with mlflow.start_run(run_name=f"seed {row['seed']}", nested=True):
                mlflow.log_param("training.seed", row["seed"])
                document = {k: v for k, v in row["metrics"].items() if k not in ("baselines", "provenance")}
                mlflow.log_metrics({**flatten(document), **{f"phase{p}.kept_val_rank_ic_1d": v for p, v in row["phase_val"].items()},
                                    "seconds": row["seconds"]})  # fmt: skip
    print(f"logged to MLflow ({uri}), experiment 'atft_kedro experiments'")


if __name__ == "__main__":
    main()
