"""Project pipelines: found by folder under ``pipelines/``.

``__default__`` runs, in data order, every pipeline that is built; a pipeline that is registered but
not built yet fails with a message saying so when it is asked for by name.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from atft_kedro.pipelines.not_built import NOT_BUILT


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    built = [p for p in pipelines.values() if not any(NOT_BUILT in n.tags for n in p.nodes)]
    pipelines["__default__"] = sum(built, Pipeline([]))
    return pipelines
