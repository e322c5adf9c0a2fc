"""What a run leaves in MLflow beside the parameters kedro-mlflow logs: the per-epoch training
history, the flattened ``metrics.json``, the report, the plots and the model (which inference can
load back by run id). Everything is logged into the run kedro-mlflow opened; without one (a run
with tracking off, the in-memory runs of tests and experiments) nothing is logged."""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import polars as pl
import torch

MODEL_ARTIFACT = "model/model.pt"


def _mlflow():
    import mlflow  # imported when a run logs: the library itself never needs it

    return mlflow if mlflow.active_run() is not None else None


def dotted(document: dict, prefix: str = "") -> dict:
    """A nested dict as one level of dotted paths: ``{"model": {"gat_start": x}}`` ->
    ``{"model.gat_start": x}``; an empty dict is a leaf of its own."""
    out = {}
    for key, value in document.items():
        if isinstance(value, dict) and value:
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def flatten(document: dict, prefix: str = "") -> dict[str, float]:
    """``{"horizons": {"1d": {"model": {"rank_ic": 0.02}}}}`` -> ``{"horizons.1d.model.rank_ic": 0.02}``:
    every finite number of a nested document, under its dotted path."""
    return {
        name: float(value) for name, value in dotted(document, prefix).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }  # fmt: skip


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """One metric into the active run (a finite value; nothing without a run)."""
    if (mlflow := _mlflow()) is not None and math.isfinite(value):
        mlflow.log_metric(name, float(value), step=step)


def log_config(name: str, config) -> None:
    """A typed parameter (a config dataclass) as flat parameters ``name.field`` (``name.model.d_model``),
    as kedro-mlflow logs the parameters that stay dicts."""
    if (mlflow := _mlflow()) is not None:
        leaves = dotted(dataclasses.asdict(config), f"{name}.").items()
        mlflow.log_params({key: str(value)[:250] for key, value in leaves if not isinstance(value, dict)})  # an empty dict: nothing to log


def log_training_history(history: pl.DataFrame) -> None:
    """Per-epoch metrics, one series per phase and metric (``phase2.val_rank_ic_1d``), step = epoch."""
    mlflow = _mlflow()
    if mlflow is None or history.is_empty():
        return
    columns = [c for c in history.columns if c not in ("phase", "epoch") and history.schema[c].is_numeric()]
    for row in history.iter_rows(named=True):
        metrics = {f"phase{row['phase']}.{c}": float(row[c]) for c in columns if row[c] is not None and math.isfinite(row[c])}
        mlflow.log_metrics(metrics, step=int(row["epoch"]))


def log_metrics_document(metrics: dict) -> None:
    """``metrics.json``, flattened into MLflow metrics (what validation chose for the baselines stays
    in the file, logged as an artifact beside it)."""
    mlflow = _mlflow()
    if mlflow is None:
        return
    mlflow.log_metrics(flatten({k: v for k, v in metrics.items() if k not in ("baselines", "provenance")}))
    mlflow.log_dict(metrics, "reporting/metrics.json")


def log_text(text: str, name: str) -> None:
    if (mlflow := _mlflow()) is not None:
        mlflow.log_text(text, f"reporting/{name}")


def log_figure(figure, name: str, saved: Path | None = None) -> None:
    """``figure`` as ``reporting/{name}``: the file the catalog wrote it to (``saved``, when named
    ``name``), as in the report and without drawing it a second time (up to a second a plot), else
    drawn by MLflow."""
    if (mlflow := _mlflow()) is None:
        return
    if saved is not None and saved.name == name:
        mlflow.log_artifact(str(saved), artifact_path="reporting")
    else:
        mlflow.log_figure(figure, f"reporting/{name}")


def log_model(model: dict) -> None:
    """The checkpoint as the catalog saves it, so ``inference.mlflow_run_id`` can load it back."""
    if (mlflow := _mlflow()) is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(MODEL_ARTIFACT).name
        torch.save(model, path)
        mlflow.log_artifact(str(path), artifact_path=str(Path(MODEL_ARTIFACT).parent))


def load_logged_model(run_id: str, tracking_uri: str | None = None) -> dict:
    """The model checkpoint logged by run ``run_id``."""
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=MODEL_ARTIFACT, dst_path=tmp)
        return torch.load(path, map_location="cpu", weights_only=True)
