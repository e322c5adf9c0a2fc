"""Typed parameters. Nodes annotate their parameters with the project's config dataclasses, so
Kedro builds and validates them (``__post_init__`` checks) before any node runs; ``typed`` lets a
node also take the plain dict a direct call passes. ``unknown_parameters`` finds the keys nothing
reads, in those groups and in the ones nodes take as dicts: a misspelt key is an error, not a
setting silently left out."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

T = TypeVar("T")

MAPPED_MODEL_KEYS = ("lead_weights", "lead_features")  # training.model keys build_model maps to ModelConfig's column fields
DERIVED_MODEL_KEYS = {  # ModelConfig fields build_model sets from the data and the phase: not parameters
    "n_features": "the feature manifest", "n_market": "the market context", "edge_dim": "the graphs", "gat_backend": "training.mode",
    "use_fan": "the phase", "use_gat": "the phase", "horizons": "the phase", "lead_attribute": "training.model.lead_weights",
    "lead_columns": "training.model.lead_features",
}  # fmt: skip


def typed(cls: type[T], value: T | dict) -> T:
    return value if isinstance(value, cls) else cls(**value)


def _known_keys() -> dict[str, set[str]]:
    """{group (dotted): the keys read in it}, for the groups whose keys the project fixes."""
    from atft_kedro.data.jquants.config import JQuantsConfig
    from atft_kedro.data.sources import SourceConfig
    from atft_kedro.data.synthetic import SyntheticConfig
    from atft_kedro.evaluation import evaluate
    from atft_kedro.evaluation.baselines import LightGBMConfig
    from atft_kedro.features import normalise
    from atft_kedro.features.splits import SplitConfig
    from atft_kedro.graph.correlation import GraphConfig
    from atft_kedro.model.atft import ModelConfig
    from atft_kedro.pipelines.inference import nodes as inference
    from atft_kedro.training.config import TrainConfig
    from atft_kedro.training.losses import LossWeights
    from atft_kedro.training.predict import FORECAST_PARAMETERS

    fields = lambda cls: {f.name for f in dataclasses.fields(cls)}  # noqa: E731
    return {"raw": fields(SourceConfig), "splits": fields(SplitConfig), "graph": fields(GraphConfig), "training": fields(TrainConfig),
            "evaluation": set(evaluate.PARAMETERS), "evaluation.lightgbm": fields(LightGBMConfig),
            "normalisation": set(normalise.PARAMETERS), "inference": set(inference.PARAMETERS), "forecast": set(FORECAST_PARAMETERS),
            "training.model": fields(ModelConfig) - set(DERIVED_MODEL_KEYS) | set(MAPPED_MODEL_KEYS),
            "training.loss_weights": fields(LossWeights), "raw.jquants": fields(JQuantsConfig), "raw.synthetic_overrides": fields(SyntheticConfig)}  # fmt: skip


def unknown_parameters(params: dict, read: set[str]) -> list[str]:
    """The keys of ``params`` (the project's parameters: conf/base's, conf/local's and the command
    line's) that nothing reads, each with the keys read beside it; ``read``: the top-level names the
    project's pipelines read (``params:<name>``). Below the top level, the groups of
    ``_known_keys`` are checked; the others' keys (a phase or a horizon: ``training.epochs``,
    ``training.horizon_weights``) their config checks."""
    known, problems = {"": set(read), **_known_keys()}, []

    def walk(group: str, value: dict) -> None:
        for key, inner in value.items():
            name = f"{group}.{key}" if group else key
            if group == "training.model" and key in DERIVED_MODEL_KEYS:
                problems.append(f"{name} (set by the run from {DERIVED_MODEL_KEYS[key]}, not a parameter)")
            elif key not in known[group]:
                problems.append(f"{name} (the keys {'at the top level' if not group else f'of {group}'}: {', '.join(sorted(known[group]))})")
            elif name in known and isinstance(inner := _plain(inner), dict):
                walk(name, inner)

    walk("", params)
    return problems


def _plain(value):
    """A group as a dict: during a kedro run the groups nodes annotate with a config dataclass are
    already that dataclass in the catalog's ``parameters`` (their nested dicts still dicts)."""
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value


def parameters_read(pipelines) -> set[str]:
    """The top-level parameter names ``pipelines`` read (``params:<name>`` or ``params:<name>.<key>``)."""
    return {d.removeprefix("params:").split(".")[0] for p in pipelines for d in p.datasets() if d.startswith("params:")}


def parameter_problems(params: dict, read: set[str]) -> str | None:
    """What is wrong with ``params`` before any node runs, or None: keys nothing reads
    (``unknown_parameters``), then a ``source`` there is not or a synthetic market it cannot make
    (``raw.synthetic_size``, ``_market``, ``_seed``) or J-Quants settings it cannot fetch with
    (``raw.jquants.plan``, the dates), then values the dict-taking groups refuse
    (``normalisation.clip`` and ``.rank_groups``; ``training.model``: the model it describes, met
    otherwise when a phase builds it; ``phase``; ``evaluation``: its config's checks, which its node
    would otherwise meet only after training; ``forecast.one_day_share``: in [0, 1); ``inference``'s
    ``as_of`` and ``top``)."""
    unknown = unknown_parameters(params, read)
    if unknown:
        return "parameters that nothing reads, so the run would ignore them (misspelt?): " + "; ".join(unknown)
    if "source" in params:
        from atft_kedro.data.sources import SOURCES

        if params["source"] not in SOURCES:
            return f"source is where the raw tables come from, one of {', '.join(SOURCES)}; got {params['source']!r}"
        if params["source"] == "synthetic":  # the market it names (size, layout, seed), met otherwise in the first node
            from atft_kedro.data.sources import SourceConfig, synthetic_config

            try:
                synthetic_config(typed(SourceConfig, _plain(params.get("raw", {}))))
            except (ValueError, TypeError) as error:
                return str(error) if str(error).startswith("raw.") else f"raw: {error}"
        if params["source"] == "jquants":  # what to fetch (plan, dates), met otherwise in the first node
            from atft_kedro.data.jquants.config import JQuantsConfig, JQuantsError

            try:
                JQuantsConfig(**(_plain(params.get("raw", {})).get("jquants") or {}))
            except JQuantsError as error:
                return str(error)
    normalisation = _plain(params.get("normalisation", {}))
    clip = normalisation.get("clip", 5.0)
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not clip > 0:
        return f"normalisation: clip is the robust z-score the features are clipped at, > 0, got {clip!r}"
    rank_groups = normalisation.get("rank_groups") or []
    if rank_groups:  # met otherwise where the features are normalised, after they are built
        from atft_kedro.features.builders import stock_feature_groups

        groups = stock_feature_groups()
        if isinstance(rank_groups, str) or not set(rank_groups) <= groups:
            return f"normalisation: rank_groups is a list of stock feature groups ({', '.join(sorted(groups))}), e.g. [range]; got {rank_groups!r}"
    model = _plain(params.get("training", {})).get("model", {})
    if model:  # the model it describes is built (small inputs, no weights trained): what its first phase would meet
        from atft_kedro.model.atft import ATFTGATFAN, ModelConfig

        sizes = {k: tuple(v) if isinstance(v, list) else v for k, v in model.items() if k not in MAPPED_MODEL_KEYS}
        lead = {"lead_attribute": 0} if model.get("lead_weights") is not None else {"lead_bands": ()}  # as build_model maps them
        try:
            ATFTGATFAN(ModelConfig(n_features=2, n_market=1, edge_dim=1, **{**sizes, **lead}))
        except (ValueError, TypeError) as error:
            return f"training.model: {error}"
    from atft_kedro.training.predict import one_day_share

    try:
        one_day_share(_plain(params.get("forecast")))
    except ValueError as error:
        return f"forecast: {error}"
    if "phase" in params:
        from atft_kedro.training.config import parse_phases

        try:
            parse_phases(params["phase"])
        except ValueError as error:
            return str(error)
    if "inference" in params:
        from atft_kedro.inference import inference_problem

        problem = inference_problem(_plain(params["inference"]) or {})
        if problem:
            return problem
    if "evaluation" in params:
        from atft_kedro.evaluation.evaluate import EvaluationConfig

        try:
            EvaluationConfig.from_params(_plain(params["evaluation"]))
        except (ValueError, TypeError) as error:
            return f"evaluation: {error}"
    return None
