"""Each horizon forecast by the state of training that validation ranks best at that horizon?

    python experiments/seeds.py --seeds 0 1 2 --states --out runs.json [--params P]
    python experiments/per_horizon_best.py --runs runs.json --out DIR
    python experiments/seeds.py --report DIR/runs.json          # the switched runs against the baselines
    python experiments/per_horizon_best.py --project . --out DIR  # after a `kedro run` (one fold)

Training chains its phases on the 1-day validation RankIC (``training.early_stopping_weights``):
each phase starts from the previous one's best at 1 day, so a run ends with the state best at 1
day among all it validated (each phase's start and each epoch), and a state that ranked 5-20 day
returns better is thrown away with the rest. Here each horizon is forecast by the state whose
validation RankIC is the highest at that horizon among every state the run validated (``seeds.py
--states`` keeps their forecasts; ties go to the run's own model). Nothing is retrained: the frames
are what a model kept per horizon would forecast.

Two readings per horizon, the chosen states' forecasts minus the run's own (each date's RankIC
averaged over the runs, with the Newey-West 95% interval at lag h - 1), raw and with sector means
and beta out of the returns:

- validation's later half, the state chosen on its first half (in time): what validation alone
  says the choice is worth;
- test, the state chosen on the whole of validation.

The switched runs (the choice on the whole of validation) are written under ``--out``, their own
files only read.

``--project DIR``: the states of a ``kedro run`` made in DIR instead (a market too large to train
twice, the full size): each phase's best and last checkpoint, beside the run's own predictions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HORIZONS = ("1d", "5d", "10d", "20d")


def daily_by_state(states, tags: list[str], h: str) -> dict:
    """{tag: {date: validation RankIC at ``h``}} of every state that forecasts ``h`` (phase 0
    forecasts 1 day only)."""
    from seeds import _daily

    return {t: _daily(states, f"pred_{h}@{t}", f"target_{h}", False) for t in tags if f"pred_{h}@{t}" in states.columns}


def choose(daily: dict, final: str, dates: set | None = None) -> str:
    """The state (of ``daily_by_state``'s) whose forecast ranks best on ``dates`` (all when None),
    mean daily RankIC; ties to ``final``, the run's own model."""
    import numpy as np

    def score(tag: str) -> float:
        kept = [v for t, v in daily[tag].items() if dates is None or t in dates]
        return float(np.mean(kept)) if kept else float("-inf")

    return max(daily, key=lambda t: (score(t), t == final))


def chosen_minus_own(runs: list[dict], picks: list[dict], split: str, h: str, neutral: bool, later: bool) -> dict:
    """Each date's RankIC at ``h`` of the chosen state's forecast minus the run's own, averaged over
    the runs (validation's later half only with ``later``): mean and Newey-West interval."""
    import numpy as np

    from seeds import _daily
    from atft_kedro.evaluation.metrics import difference_summary, overlap_lag

    per_run = []
    for run, pick in zip(runs, picks):
        frame = run["states_" + split]
        tag, keep = (pick["half"][h], set(pick["later"])) if later else (pick["all"][h], None)
        ours, theirs = (_daily(frame, f"pred_{h}@{t}", f"target_{h}", neutral) for t in (tag, run["final"]))
        per_run.append({t: ours[t] - theirs[t] for t in set(ours) & set(theirs) if keep is None or t in keep})
    common = sorted(set.intersection(*(set(d) for d in per_run)))
    return difference_summary(np.array([np.mean([d[t] for d in per_run]) for t in common]), overlap_lag(h))


def load(row: dict) -> dict:
    """A ``seeds.py --states`` run: its scored frames and its states' forecasts, checked to be aligned
    and to hold the run's own model among the states."""
    import numpy as np
    import polars as pl

    if not row.get("states"):
        raise SystemExit(f"seed {row['seed']} was run without --states: run seeds.py --states")
    run = {"row": row, "seed": row["seed"], "tags": row["states"]["tags"], "final": row["states"]["final"],
           "val": pl.read_parquet(row["val_frame"]), "test": pl.read_parquet(row["frame"]),
           "states_val": pl.read_parquet(row["states"]["val_frame"]), "states_test": pl.read_parquet(row["states"]["frame"])}  # fmt: skip
    for split in ("val", "test"):
        own, states = run[split], run["states_" + split]
        if not own.select("Date", "Code").equals(states.select("Date", "Code")):
            raise SystemExit(f"seed {run['seed']}: the {split} states' rows are not the scored frame's")
        for h in HORIZONS:
            if f"pred_{h}" in own.columns and not np.allclose(own[f"pred_{h}"].to_numpy(), states[f"pred_{h}@{run['final']}"].to_numpy(), atol=1e-6):
                raise SystemExit(f"seed {run['seed']}: state {run['final']} does not forecast {split} as the run's model does at {h}")
    return run


def project_run(project: Path, out: Path) -> Path:
    """After a ``kedro run`` (one fold) in ``project``: each phase's best and last checkpoint as the
    states, their forecasts written under ``out`` beside the run's own predictions; -> the runs JSON."""
    import polars as pl
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog

    from seeds import beta_and_sector, candidate_frames

    config = OmegaConfigLoader(str(project / "conf"), base_env="base", default_run_env="local")["catalog"]
    config = {name: {**entry, "filepath": str(project / entry["filepath"])} if "filepath" in entry else entry for name, entry in config.items()}
    catalog = DataCatalog.from_config(config)
    data = {name: catalog.load(name) for name in ("training_arrays", "graphs", "splits", "model_input", "model", "checkpoints")}
    if data["splits"]["fold"].n_unique() > 1:
        raise SystemExit("--project takes a run of one fold (splits.n_folds 1)")
    store = data["checkpoints"]
    states = [store.load(p, kind) for p in store.phases() for kind in ("best", "last") if store.exists(p, kind)]
    beside = beta_and_sector(pl.read_parquet(config["features"]["filepath"], columns=["Date", "Code", "beta_60d"]), data["model_input"])
    seed = int(data["model"]["config"]["train"]["seed"])
    frames, row = out / "frames", {"seed": seed}
    frames.mkdir(parents=True, exist_ok=True)
    scored = {}
    for split, name, key in (("val", "validation_predictions", "val_frame"), ("test", "predictions", "frame")):
        scored[split] = catalog.load(name).join(beside, on=["Date", "Code"], how="left", maintain_order="left")
        row[key] = str(frames / f"seed{seed}{'_val' if split == 'val' else ''}.parquet")
        scored[split].write_parquet(row[key])
    # the states forecast as the run's predictions were made: with the run's lean on the 1-day forecast (metrics.json records it)
    share = (catalog.load("metrics").get("provenance") or {}).get("one_day_share", 0.0)
    row["states"] = candidate_frames(states, data["model"], data, scored, frames, seed, {"one_day_share": share})
    (out / "project_run.json").write_text(json.dumps([row], indent=1))
    return out / "project_run.json"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", nargs="+", help="seeds.py --states --out JSON files (the runs of one market)")
    parser.add_argument("--project", default=None, help="a project folder after a `kedro run`: its checkpoints' states instead of --runs")
    parser.add_argument("--out", required=True, help="folder for the switched runs' frames and JSON")
    args = parser.parse_args()
    if bool(args.runs) == bool(args.project):
        raise SystemExit("give --runs or --project")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    files = [project_run(Path(args.project), out)] if args.project else args.runs
    runs = [load(r) for f in files for r in json.loads(Path(f).read_text())]
    horizons = [h for h in HORIZONS if all(f"pred_{h}" in run["val"].columns for run in runs)]
    picks = []
    print("| seed | horizon | the run's own (state) | chosen on all of validation | chosen on its first half |\n|---|---|---|---|---|")
    for run in runs:
        dates = sorted(run["states_val"]["Date"].unique().to_list())
        first, later = set(dates[: len(dates) // 2]), dates[len(dates) // 2 :]
        pick = {"all": {}, "half": {}, "later": later}
        for h in horizons:
            daily = daily_by_state(run["states_val"], run["tags"], h)
            pick["all"][h], pick["half"][h] = choose(daily, run["final"]), choose(daily, run["final"], first)
            print(f"| {run['seed']} | {h} | {run['final']} | {pick['all'][h]} | {pick['half'][h]} |")
        picks.append(pick)
    cell = lambda s: f"{s['mean']:+.4f} [{s['ci95_low']:+.4f}, {s['ci95_high']:+.4f}] | {s['dates']}"  # noqa: E731
    neutral_ok = all({"beta_60d", "Sector33Code"} <= set(run["states_val"].columns) for run in runs)
    for reading, split, later in (("validation's later half, chosen on its first half", "val", True), ("test, chosen on the whole of validation", "test", False)):
        print(f"\n### {reading}: the chosen states minus the runs' own\n")
        print("| horizon | raw | dates | sectors and beta out | dates |\n|---|---|---|---|---|")
        for h in horizons:
            raw = chosen_minus_own(runs, picks, split, h, False, later)
            neutral = cell(chosen_minus_own(runs, picks, split, h, True, later)) if neutral_ok else "n/a | "
            print(f"| {h} | {cell(raw)} | {neutral} |")
    switched = []
    for n, (run, pick) in enumerate(zip(runs, picks)):
        frames = {}
        for split, key, suffix in (("val", "val_frame", "_val"), ("test", "frame", "")):
            swap = [run["states_" + split][f"pred_{h}@{pick['all'][h]}"].alias(f"pred_{h}") for h in horizons]
            frames[key] = str(out / f"run{n}{suffix}.parquet")
            run[split].with_columns(swap).write_parquet(frames[key])
        switched.append({**run["row"], **frames, "chosen": pick["all"]})
    (out / "runs.json").write_text(json.dumps(switched, indent=1))
    print(f"\nswitched runs written to {out / 'runs.json'}")


if __name__ == "__main__":
    main()
