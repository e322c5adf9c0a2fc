"""Project pipelines, found by folder under ``pipelines/``; ``__default__`` runs the four of a
research run (data_engineering -> graph_construction -> training -> evaluation, ordered by their
data). ``inference`` runs on its own, after a run has trained a model."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum((p for name, p in pipelines.items() if name != "inference"), Pipeline([]))
    return pipelines
