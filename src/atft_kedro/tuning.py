"""Optuna studies over the training parameters, across processes and hosts.

    python -m atft_kedro.tuning --study atft --trials 20 --seeds 0 1
    python -m atft_kedro.tuning --study atft --trials 20 --seeds 0 1 &   # a second worker joins it
    python -m atft_kedro.tuning --study atft --best conf/local/parameters_tuned.yml

Each trial draws the parameters that matter (learning rate, weight decay, dropout, d_model, the
rank-IC and IC loss weights, the window, the graph's k), trains phases 0-3 once per seed on the
project's data (the pipelines' own nodes, in memory) and returns the mean over seeds of the last
phase's best validation RankIC (1d, what early stopping uses). The test split is never read. With
walk-forward splits (``splits.n_folds`` > 1) it tunes on the last fold's training and validation
dates, the fold whose model a run keeps.
Every epoch's validation score of the first seed is reported, so the median pruner stops trials
that trail the others.

The study lives in ``--storage`` (default: SQLite in the project, ``optuna.db``, which git
ignores); any SQLAlchemy URL (e.g. PostgreSQL) lets workers on several hosts join one study by
name. ``--best FILE`` writes the best trial's parameters as a Kedro parameters file: the whole
``training`` and ``graph`` sections, so ``kedro run`` takes them from ``conf/local/``.

Every trial is an MLflow run (optuna-integration's ``MLflowCallback``) nested under one run of the
study, in the project's store and experiment (``conf/base/mlflow.yml``, as ``kedro run`` logs;
``--mlflow URI`` for another store, ``--mlflow none`` for none): its parameters, its value and
state, each seed's score and the first seed's per-epoch validation curve. Workers find the
study's run through the study (its ``mlflow_run_id`` attribute).
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

from atft_kedro import tracking

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
        from atft_kedro.features.splits import kept_fold
        from atft_kedro.pipelines.in_memory import run_in_memory
        from atft_kedro.pipelines.training.nodes import build_training_arrays
        from atft_kedro.training.data import fold_arrays, split_indices

        self.base, self.seeds = base, seeds
        self.data = run_in_memory(["data_engineering"], base)
        arrays = build_training_arrays(self.data["model_input"], self.data["market_context"], self.data["feature_manifest"],
                                       base["training"], self.data["data_fingerprint"])  # fmt: skip
        splits = self.data["splits"]
        self.fold = kept_fold(splits)  # walk-forward: the last fold, whose model a run keeps (one fold: fold 0)
        self.arrays = fold_arrays(arrays, splits, self.fold, self.data["market_features"], base["normalisation"])
        self.train_idx, self.val_idx = (split_indices(self.arrays, splits, s, self.fold) for s in ("train", "val"))
        if self.fold:
            log.info("walk-forward splits: the study tunes on fold %d's training and validation dates (the last fold's)", self.fold)
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
        from atft_kedro.training.loop import train_phase

        params = suggest(trial, self.base)
        graphs = self._graphs(params["graph"])
        train_idx, val_idx = self.train_idx, self.val_idx
        scores, step = [], 0
        for n, seed in enumerate(self.seeds):
            cfg = TrainConfig(**{**params["training"], "seed": seed})
            with tempfile.TemporaryDirectory() as tmp:
                store = CheckpointStore(tmp)
                for phase in sorted(PHASES):

                    def report(epoch, phase=phase, store=store):
                        nonlocal step
                        if n == 0:  # the first seed's curve, epoch by epoch, for the pruner
                            value = store.load(phase, "last")["history"][-1]["val_metric"]
                            trial.report(value, step)
                            tracking.log_metric("first_seed.val_metric", value, step)
                            step += 1
                            if trial.should_prune():
                                raise optuna.TrialPruned()

                    train_phase(phase, self.arrays, graphs, train_idx, val_idx, cfg, store, self.data["feature_manifest"],
                                on_epoch_end=report, progress=False)  # fmt: skip
                scores.append(store.load(max(PHASES), "best")["best"])
                tracking.log_metric(f"seed{seed}.val_rank_ic_1d", scores[-1])
        value = sum(scores) / len(scores)
        trial.set_user_attr("per_seed", scores)
        return value


def best_parameters_file(study: optuna.Study, base: dict, path: Path) -> None:
    """The best trial's parameters, as the ``training`` and ``graph`` sections of a parameters file."""
    params = suggest(optuna.trial.FixedTrial(study.best_params), base)
    header = f"# Optuna study {study.study_name!r}, trial {study.best_trial.number}: mean validation RankIC (1d) {study.best_value:.4f}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump({"training": params["training"], "graph": params["graph"]}, sort_keys=False))


def project_mlflow() -> tuple[str, str]:
    """(tracking URI, experiment) of the project's MLflow settings: conf/base/mlflow.yml, with
    conf/local/mlflow.yml over it where it sets them."""
    from atft_kedro.pipelines.in_memory import ROOT

    uri, experiment = "sqlite:///mlflow.db", "atft_kedro"
    for env in ("base", "local"):
        path = ROOT / "conf" / env / "mlflow.yml"
        conf = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
        uri = (conf.get("server") or {}).get("mlflow_tracking_uri") or uri
        experiment = ((conf.get("tracking") or {}).get("experiment") or {}).get("name") or experiment
    return uri, experiment


def _store_lock(uri: str):
    """A lock beside a local SQLite store while a worker opens it: workers started together would
    race to create a new store's tables (a server needs none)."""
    import contextlib

    from filelock import FileLock

    path = uri.removeprefix("sqlite:///")
    return FileLock(path + ".lock") if uri.startswith("sqlite:///") else contextlib.nullcontext()


def track_trials(study: optuna.Study, uri: str, experiment: str):
    """-> the callback that makes every trial an MLflow run nested under the study's run (made by
    the first worker, found by the others through the study), which is now active."""
    import warnings

    import mlflow
    from optuna_integration.mlflow import MLflowCallback

    mlflow.set_tracking_uri(uri)
    with _store_lock(uri):
        experiment_id = mlflow.set_experiment(experiment).experiment_id
    if "mlflow_run_id" not in study.user_attrs:
        run = mlflow.MlflowClient().create_run(experiment_id, run_name=f"optuna study {study.study_name}",
                                               tags={"optuna.study": study.study_name})  # fmt: skip
        study.set_user_attr("mlflow_run_id", run.info.run_id)
    mlflow.start_run(run_id=study.user_attrs["mlflow_run_id"])
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module="optuna_integration")
    return MLflowCallback(tracking_uri=uri, metric_name="val_rank_ic_1d", create_experiment=False,
                          mlflow_kwargs={"nested": True, "experiment_id": experiment_id})  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m atft_kedro.tuning", description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="atft", help="the study's name: workers with one name join one study")
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help="an SQLAlchemy URL (default: SQLite in the project)")
    parser.add_argument("--trials", type=int, default=0, help="trials this worker runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds per trial")
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON (e.g. a smaller market)")
    parser.add_argument("--best", type=Path, help="write the best trial's parameters to this file (e.g. conf/local/parameters_tuned.yml)")
    parser.add_argument("--mlflow", help="MLflow tracking URI for the trials (default: the project's, conf/*/mlflow.yml; 'none': no tracking)")
    args = parser.parse_args(argv)

    from atft_kedro.pipelines.in_memory import parameters_from_argument

    base = parameters_from_argument(parser, args.params)  # before the study is opened, as a kedro run checks them
    study = optuna.create_study(study_name=args.study, storage=args.storage, direction="maximize", load_if_exists=True,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2))  # fmt: skip
    if args.trials:
        objective, callbacks = Objective(base, args.seeds), []
        uri, experiment = project_mlflow()
        if (args.mlflow or uri) != "none":
            callback = track_trials(study, args.mlflow or uri, experiment)
            objective, callbacks = callback.track_in_mlflow()(objective), [callback]
        try:
            study.optimize(objective, n_trials=args.trials, callbacks=callbacks)
        finally:
            if callbacks:
                import mlflow

                mlflow.end_run()
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    print(json.dumps({"study": args.study, "trials": len(study.trials), "complete": len(finished),
                      "best": {"value": study.best_value, "params": study.best_params} if finished else None}))  # fmt: skip
    if args.best and finished:
        best_parameters_file(study, base, args.best)


if __name__ == "__main__":
    main()
