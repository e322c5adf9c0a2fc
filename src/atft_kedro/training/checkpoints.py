"""Checkpoints of every phase, saved atomically and loaded with ``weights_only=True``.

Layout under the store's root: ``phase{N}/best.pt`` and ``phase{N}/last.pt``. A checkpoint is a dict
of tensors and plain Python values: model and optimizer state, epoch, best metric, history, the
torch RNG state, the run's config (``config["model"]`` is the ``ModelConfig`` of the phase, its
switches included) and the feature manifest. ``model_from_checkpoint`` rebuilds the trained model from
one: training, evaluation and inference all go through it.
"""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path

import torch

from atft_kedro.atomic import atomic_file
from atft_kedro.model import ATFTGATFAN, ModelConfig

KINDS = ("best", "last")
FORMAT = 2  # 2: config["model"] holds the phase's switches (use_fan, use_gat, horizons)


class TrainingError(RuntimeError):
    """A run that cannot go on; the message says why and what to do."""


def load_weights(model: torch.nn.Module, weights: dict, where: str, remake: str) -> None:
    """Load a checkpoint's weights, or say which checkpoint (``where``) no longer fits the model and
    which phase (``remake``, e.g. "phase=1") writes it again."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        detail = " ".join(str(err).split())
        detail = detail if len(detail) <= 300 else detail[:300] + " ..."
        raise TrainingError(
            f"{where} does not fit this model (written by another version or model size: "
            f"{detail}); rerun that phase (kedro run --pipelines training --params {remake}) or phase=all"
        ) from err


def model_from_checkpoint(state: dict, where: str = "the checkpoint", backend: str = "auto") -> ATFTGATFAN:
    """The model a checkpoint was trained as (its phase's switches, sizes and weights), on the CPU,
    in eval mode. ``backend`` picks the GAT kernel (``auto``: Triton on CUDA tensors)."""
    phase = state.get("config", {}).get("phase", "all")
    if state.get("format") != FORMAT:
        raise TrainingError(
            f"{where} was written by an earlier version of atft-kedro that did not record the phase's "
            f"model switches; retrain it (kedro run --pipelines training --params phase={phase})"
        )
    saved = state["config"]["model"]
    known = {f.name for f in fields(ModelConfig)}
    cfg = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known} | {"gat_backend": backend})
    model = ATFTGATFAN(cfg)
    load_weights(model, state["model"], where, f"phase={phase}")
    return model.eval()


def read_checkpoint(path: str | Path, remake: str) -> dict:
    """A checkpoint file as saved (tensors and plain values, ``weights_only``), or an error that
    names the file and what writes it again (``remake``) where it is damaged or not a checkpoint.
    A missing file is the caller's to say (FileNotFoundError passes through)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # a truncated zip (OSError, RuntimeError), a pickle of other objects, ...
        detail = " ".join(str(err).split()).split(". ")[0]  # torch's first sentence; the rest is advice for files of other origins
        raise TrainingError(f"{path} cannot be read as a checkpoint (damaged, or another kind of file: {type(err).__name__}: {detail}); {remake}") from err


def atomic_torch_save(state: dict, path: Path) -> None:
    """Write to a temporary file and rename: a kill mid-save leaves the old file intact."""
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


class CheckpointStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, phase: int, kind: str) -> Path:
        if kind not in KINDS:
            raise ValueError(f"checkpoint kind must be one of {KINDS}, got {kind!r}")
        return self.root / f"phase{phase}" / f"{kind}.pt"

    def exists(self, phase: int, kind: str) -> bool:
        return self.path(phase, kind).exists()

    def save(self, phase: int, kind: str, state: dict, also: tuple[str, ...] = ()) -> Path:
        """``state`` as ``phase``'s ``kind``, then as each kind of ``also`` in turn: a copy of the
        file, each replacing the one before atomically (serialised once)."""
        path = self.path(phase, kind)
        atomic_torch_save(state, path)
        for other in also:
            with atomic_file(self.path(phase, other)) as tmp:
                shutil.copyfile(path, tmp)
        return path

    def load(self, phase: int, kind: str) -> dict:
        path = self.path(phase, kind)
        if not path.exists():
            raise FileNotFoundError(path)
        return read_checkpoint(path, f"train phase {phase} again: kedro run --pipelines training --params phase={phase} (or phase=all)")

    def fold(self, fold: int) -> "CheckpointStore":
        """Walk-forward: fold 0's checkpoints are the store's own (where a one-fold run keeps
        them), fold f's sit in ``fold{f}/`` beside them."""
        return self if fold == 0 else CheckpointStore(self.root / f"fold{fold}")

    def phases(self) -> list[int]:
        return sorted(int(p.name[5:]) for p in self.root.glob("phase*") if (p / "best.pt").exists())
