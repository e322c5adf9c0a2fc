"""The project's pipelines run on an in-memory catalog: how tests and benchmarks make their inputs.

They run the very nodes ``kedro run`` runs, with the parameters of ``conf/base`` (plus overrides),
so a benchmark measures what a user gets, and nothing re-implements a pipeline step.

    params = project_parameters({"raw": {"synthetic_size": "tiny"}})
    out = run_in_memory(["data_engineering", "graph_construction"], params)
    out["model_input"], out["graphs"]

Every dataset stays in memory and is handed over as is (no copies); ``inputs`` supplies free inputs
or replaces what a pipeline would otherwise compute (e.g. ``{"checkpoints": CheckpointStore(tmp)}``).
"""

from __future__ import annotations

import copy
import logging
import importlib
from pathlib import Path
from typing import Any

from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner
from kedro.validation.parameter_validator import ParameterValidator

from atft_kedro.data.jquants import JQuantsCredentials
from atft_kedro.pipelines.typed import parameter_problems, parameters_read

ROOT = Path(__file__).resolve().parents[3]
ORDER = ("data_engineering", "graph_construction", "training", "evaluation", "inference")


def project_parameters(overrides: dict | None = None, conf: Path = ROOT / "conf") -> dict:
    """The parameters of ``conf/base`` (every parameters*.yml, as Kedro merges them), with
    ``overrides`` merged in key by key (nested dicts merged, anything else replaced)."""
    from kedro.config import OmegaConfigLoader

    from atft_kedro.settings import quiet_kedro_deprecations

    quiet_kedro_deprecations()

    params = OmegaConfigLoader(str(conf), base_env="base", default_run_env="base")["parameters"]
    return _merged(copy.deepcopy(dict(params)), overrides or {})


def _merged(base: dict, overrides: dict) -> dict:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merged(dict(base[key]), value)
        else:
            base[key] = value
    return base


class _Kept(MemoryDataset):
    """A memory dataset the runner does not release, so every output can be read after the run."""

    def _release(self) -> None:
        pass


def pipeline_named(names) -> Pipeline:
    """The sum of the named pipelines (each a folder under ``pipelines/``)."""
    return sum((importlib.import_module(f"{__package__}.{n}").create_pipeline() for n in names), Pipeline([]))


def checked_parameters(params: dict, pipeline: Pipeline | None = None) -> dict:
    """``params`` checked as a ``kedro run`` checks them before any node -> the parameters its nodes
    get: the project's checks (a ValueError with the run's message), then Kedro's, which make the
    groups ``pipeline``'s nodes (by default every pipeline's) annotate with a config dataclass into
    one (a ``ParameterValidationError``)."""
    problem = parameter_problems(params, parameters_read([pipeline_named(ORDER)]))
    if problem:
        raise ValueError(problem)
    return ParameterValidator({"__default__": pipeline or pipeline_named(ORDER)}).validate_raw_params(params)


def parameters_from_argument(parser, text: str) -> dict:
    """conf/base's parameters with a command's ``--params`` JSON ``text`` merged in, checked as a
    ``kedro run`` checks them before any node (``checked_parameters``); what is wrong is the
    command's usage error (``parser.error``, an ``argparse.ArgumentParser``'s: exit status 2)."""
    import json

    from kedro.validation.exceptions import ParameterValidationError

    try:
        params = project_parameters(json.loads(text))
        checked_parameters(params)
    except json.JSONDecodeError as error:
        parser.error(f"--params is not JSON ({error}): {text}")
    except (ValueError, ParameterValidationError) as error:
        parser.error(f"--params: {error}")
    return params


def run_in_memory(names, params: dict, inputs: dict[str, Any] | None = None, quiet: bool = True) -> dict[str, Any]:
    """Run the named pipelines (in data order) on an in-memory catalog -> every dataset by name.
    ``params`` are the top-level parameters (``project_parameters()``); a node whose outputs are
    among ``inputs`` is not run. ``quiet``: Kedro's own per-dataset log lines are left out (the
    nodes' lines stay)."""
    unknown = set(names) - set(ORDER)
    if unknown:
        raise ValueError(f"unknown pipelines {sorted(unknown)}; the project has {ORDER}")
    pipeline = pipeline_named([n for n in ORDER if n in names])
    params = checked_parameters(params, pipeline)
    inputs = {"jquants_credentials": JQuantsCredentials(), **(inputs or {})}
    catalog = DataCatalog()
    for name in pipeline.datasets():
        if name.startswith("params:"):
            catalog[name] = MemoryDataset(params[name[len("params:"):]], copy_mode="assign")
        elif name in inputs:
            catalog[name] = _Kept(inputs[name], copy_mode="assign")
        else:
            catalog[name] = _Kept(copy_mode="assign")
    given = set(inputs)
    kedro_log = logging.getLogger("kedro")
    level = kedro_log.level
    if quiet:
        kedro_log.setLevel(logging.WARNING)
    try:
        SequentialRunner().run(pipeline.only_nodes(*[n.name for n in pipeline.nodes if not set(n.outputs) & given]), catalog)
    finally:
        kedro_log.setLevel(level)
    return {n: catalog.load(n) for n in pipeline.datasets() if not n.startswith("params:") and catalog[n].exists()}
