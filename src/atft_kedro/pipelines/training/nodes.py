"""training nodes."""

from __future__ import annotations

import dataclasses
import logging
import os

import polars as pl

from atft_kedro.features.builders import stock_feature_names
from atft_kedro.features.splits import kept_fold
from atft_kedro.features.targets import neutralise_targets
from atft_kedro.graph.store import GraphSet
from atft_kedro.pipelines.typed import typed
from atft_kedro.provenance import check_built_from
from atft_kedro.training.batches import dates_per_step
from atft_kedro.training.checkpoints import CheckpointStore
from atft_kedro.training.config import TrainConfig, parse_phases
from atft_kedro.training.data import TrainingArrays, build_arrays, fold_arrays, split_indices
from atft_kedro.training.history import plot_history
from atft_kedro.training.loop import finished_before, train_phase
from atft_kedro.training.losses import LossWeights

log = logging.getLogger(__name__)


def build_training_arrays(model_input: pl.DataFrame, market_context: pl.DataFrame, feature_manifest: list[dict], params: TrainConfig,
                          data_fingerprint: dict | None = None) -> TrainingArrays:  # fmt: skip
    """The arrays training reads. With ``targets: neutral`` their targets (what the model learns and
    is validated on) are the returns less each date's sector means and beta-explained part
    (``neutral_long``: those of 5-20 days, the 1-day targets raw); the evaluation scores predictions
    against the raw returns whatever this is."""
    names = stock_feature_names(feature_manifest)
    horizons = typed(TrainConfig, params).neutral_horizons
    if horizons:
        log.info("training targets at %s: returns less each date's sector means and beta-explained part", ", ".join(f"{h}d" for h in horizons))
        model_input = neutralise_targets(model_input, horizons)
    return dataclasses.replace(build_arrays(model_input, market_context, names), data_fingerprint=data_fingerprint)


def train_model(
    training_arrays: TrainingArrays,
    graphs: GraphSet,
    splits: pl.DataFrame,
    feature_manifest: list[dict],
    checkpoints: CheckpointStore,
    phase,
    params: TrainConfig,
    data_fingerprint: dict | None = None,
    market_features: pl.DataFrame | None = None,
    normalisation: dict | None = None,
):
    """-> training_history (every phase in the store), model (best checkpoint of the last phase run;
    walk-forward: of the last fold, the one trained on the most recent data).

    With ``splits.n_folds > 1`` every fold is trained in turn on its own training and validation
    dates, its market context refitted on its training dates, its checkpoints in the store's
    ``fold{f}/`` (fold 0's where a one-fold run keeps them)."""
    phases = parse_phases(phase)
    if data_fingerprint is not None:
        check_built_from(data_fingerprint, graphs=graphs.data_fingerprint, training_arrays=training_arrays.data_fingerprint)
    cfg = typed(TrainConfig, params)
    folds = sorted(splits["fold"].unique())
    sequence = [(fold, p) for fold in folds for p in phases]
    kept = sequence[: finished_before([(checkpoints.fold(f), p) for f, p in sequence], cfg, training_arrays)]
    if kept:
        log.info("continuing an interrupted run of these data and settings: %s finished before, kept (training.resume: false trains them again)",
                 ", ".join(f"{f'fold {f} ' if len(folds) > 1 else ''}phase {p}" for f, p in kept))  # fmt: skip
    if LossWeights(**cfg.loss_weights).sharpe and dates_per_step(cfg) == 1:
        log.info("the Sharpe loss term needs several dates per step; this run's steps hold one (safe mode), so it is 0")
    if cfg.mode == "safe" and cfg.threads == 1 and (os.cpu_count() or 1) > 1:
        log.info("safe mode trains on one of this machine's %d cores: training.threads=0 uses them all (an epoch about 1.5x faster on "
                 "two; the weights then differ in their last bits, docs/reproducibility.md)", os.cpu_count())  # fmt: skip
    rows = []
    for fold in folds:
        store = checkpoints.fold(fold)
        to_train = [i for i, p in enumerate(phases) if (fold, p) not in kept]
        if to_train:  # a fold the interrupted run finished needs neither its arrays nor its market context again
            arrays = fold_arrays(training_arrays, splits, fold, market_features, normalisation)
            train_idx, val_idx = (split_indices(arrays, splits, s, fold) for s in ("train", "val"))
            log.info("%straining on %d dates, validating on %d (%s mode)",
                     f"fold {fold}: " if len(folds) > 1 else "", len(train_idx), len(val_idx), cfg.mode)  # fmt: skip
        for i in to_train:
            train_phase(phases[i], arrays, graphs, train_idx, val_idx, cfg, store, feature_manifest, followed_by=tuple(phases[i + 1:]))
        fold_rows = [row for p in store.phases() for row in store.load(p, "last")["history"]]
        rows += [{"fold": fold, **row} for row in fold_rows] if len(folds) > 1 else fold_rows
    history = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    return history, checkpoints.fold(kept_fold(splits)).load(phases[-1], "best")  # its data fingerprint says how its features were normalised


def plot_training_history(training_history: pl.DataFrame, params: TrainConfig):
    return plot_history(training_history, neutral_horizons=typed(TrainConfig, params).neutral_horizons)
