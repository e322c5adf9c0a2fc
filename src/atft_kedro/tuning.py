"""Optuna studies over the training parameters, across processes and hosts.

    python -m atft_kedro.tuning --study atft --trials 20 --seeds 0 1
    python -m atft_kedro.tuning --study atft --trials 20 --seeds 0 1 &   # a second worker joins it
    python -m atft_kedro.tuning --study atft --best conf/local/parameters_tuned.yml

Each trial draws the parameters that matter (learning rate, weight decay, dropout, d_model, the
rank-IC and IC loss weights, the window, the graph's k), trains phases 0-3 once per seed on the
project's data (the pipelines' own nodes, in memory) and returns the mean over seeds of the last
phase's best validation RankIC (1d, what early stopping uses). The test split is never read.
Every epoch's validation score of the first seed is reported, so the median pruner stops trials
that trail the others.

The study lives in ``--storage`` (default: SQLite in the project, ``optuna.db``, which git
ignores); any SQLAlchemy URL (e.g. PostgreSQL) lets workers on several hosts join one study by
name. ``--best FILE`` writes the best trial's parameters as a Kedro parameters file: the whole
``training`` and ``graph`` sections, so ``kedro run`` takes them from ``conf/local/``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
from pathlib import Path

import optuna
import yaml

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///optuna.db"


def suggest(trial: optuna.Trial, base: dict) -> dict:
    """The project parameters with this trial's draws in place."""
    params = copy.deepcopy(base)
    training, graph = params["training"], params["graph"]
    training["lr"] = trial.suggest_float("lr", 1e-4, 3e-3, log=True)
    training["weight_decay"] = trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True)
    training["window"] = trial.suggest_categorical("window", [10, 20, 30])
    training["model"] = {**training.get("model", {}), "dropout": trial.suggest_float("dropout", 0.0, 0.3),
                         "d_model": trial.suggest_categorical("d_model", [32, 64, 96])}  # fmt: skip
    training["loss_weights"] = {**training["loss_weights"], "rank_ic": trial.suggest_float("rank_ic_weight", 0.0, 1.0),
                                "ic": trial.suggest_float("ic_weight", 0.0, 1.0)}  # fmt: skip
    graph["k"] = trial.suggest_categorical("graph_k", [10, 20, 30])
    return params


class Objective:
    """Builds the data once per process and the graphs once per k; a trial trains every seed."""

    def __init__(self, base: dict, seeds: list[int]):
        from atft_kedro.pipelines.in_memory import run_in_memory
        from atft_kedro.pipelines.training.nodes import build_training_arrays

        self.base, self.seeds = base, seeds
        self.data = run_in_memory(["data_engineering"], base)
        self.arrays = build_training_arrays(self.data["model_input"], self.data["market_context"], self.data["feature_manifest"],
                                            base["training"], self.data["data_fingerprint"])  # fmt: skip
        self.graphs = {}

    def _graphs(self, graph_params: dict):
        from atft_kedro.graph.correlation import GraphConfig, build_graphs

        key = json.dumps(graph_params, sort_keys=True)
        if key not in self.graphs:
            self.graphs[key] = build_graphs(self.data["panel"], GraphConfig(**graph_params), progress=False)
        return self.graphs[key]

    def __call__(self, trial: optuna.Trial) -> float:
        from atft_kedro.training.checkpoints import CheckpointStore
        from atft_kedro.training.config import PHASES, TrainConfig
        from atft_kedro.training.data import split_indices
        from atft_kedro.training.loop import train_phase

        params = suggest(trial, self.base)
        graphs = self._graphs(params["graph"])
        train_idx, val_idx = (split_indices(self.arrays, self.data["splits"], s) for s in ("train", "val"))
        scores, step = [], 0
        for n, seed in enumerate(self.seeds):
            cfg = TrainConfig(**{**params["training"], "seed": seed})
            with tempfile.TemporaryDirectory() as tmp:
                store = CheckpointStore(tmp)
                for phase in sorted(PHASES):

                    def report(epoch, phase=phase, store=store):
                        nonlocal step
                        if n == 0:  # the first seed's curve, epoch by epoch, for the pruner
                            trial.report(store.load(phase, "last")["history"][-1]["val_metric"], step)
                            step += 1
                            if trial.should_prune():
                                raise optuna.TrialPruned()

                    train_phase(phase, self.arrays, graphs, train_idx, val_idx, cfg, store, self.data["feature_manifest"],
                                on_epoch_end=report, progress=False)  # fmt: skip
                scores.append(store.load(max(PHASES), "best")["best"])
        value = sum(scores) / len(scores)
        trial.set_user_attr("per_seed", scores)
        return value


def best_parameters_file(study: optuna.Study, base: dict, path: Path) -> None:
    """The best trial's parameters, as the ``training`` and ``graph`` sections of a parameters file."""
    params = suggest(optuna.trial.FixedTrial(study.best_params), base)
    header = f"# Optuna study {study.study_name!r}, trial {study.best_trial.number}: mean validation RankIC (1d) {study.best_value:.4f}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump({"training": params["training"], "graph": params["graph"]}, sort_keys=False))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m atft_kedro.tuning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="atft", help="the study's name: workers with one name join one study")
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help="an SQLAlchemy URL (default: SQLite in the project)")
    parser.add_argument("--trials", type=int, default=0, help="trials this worker runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds per trial")
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON (e.g. a smaller market)")
    parser.add_argument("--best", type=Path, help="write the best trial's parameters to this file (e.g. conf/local/parameters_tuned.yml)")
    args = parser.parse_args(argv)

    from atft_kedro.pipelines.in_memory import project_parameters

    base = project_parameters(json.loads(args.params))
    study = optuna.create_study(study_name=args.study, storage=args.storage, direction="maximize", load_if_exists=True,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2))  # fmt: skip
    if args.trials:
        study.optimize(Objective(base, args.seeds), n_trials=args.trials)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    print(json.dumps({"study": args.study, "trials": len(study.trials), "complete": len(finished),
                      "best": {"value": study.best_value, "params": study.best_params} if finished else None}))  # fmt: skip
    if args.best and finished:
        best_parameters_file(study, base, args.best)


if __name__ == "__main__":
    main()
