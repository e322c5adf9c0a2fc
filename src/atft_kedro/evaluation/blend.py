"""The model and LightGBM blended: a forecast of its own, scored beside the model and the baselines.

Each date's two forecasts become the normal scores of their ranks (a RankIC reads ranks only, and the
two forecasts' scales differ), and the blend is ``(1 - w) model + w LightGBM`` with the ``w`` of
``evaluation.blend_weights`` (with ``evaluation.blend: true``) whose mean daily RankIC on the
validation split is highest (ties: the smaller ``w``, the model's side); walk-forward, each fold's test block by its own fold's validation.
The stack a researcher holding both forecasts would make. It does not replace the model's forecast:
every comparison of the model (``paired``, ``validation_pick``, the goals) stays the network's own.
LightGBM's validation RankIC is the one its trees were early-stopped on, as the model's is the one its
checkpoint was kept on, so validation leans a little towards both.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from atft_kedro.evaluation.baselines import mean_daily_rank_ic
from atft_kedro.features.normalise import rank_gauss_by_date


def _scored(frame: pl.DataFrame, h: str) -> pl.DataFrame:
    """``frame``'s model and LightGBM forecasts at ``h`` as each date's rank normal scores (per fold)."""
    frame = frame if "fold" in frame.columns else frame.with_columns(pl.lit(0, pl.Int32).alias("fold"))
    ranked = rank_gauss_by_date(frame, [f"pred_{h}", f"lightgbm_{h}"], by=["fold", "Date"])
    return frame.with_columns(ranked[f"pred_{h}"].alias("model_"), ranked[f"lightgbm_{h}"].alias("lightgbm_"))


def _mixed(scored: pl.DataFrame, w: float) -> pl.Series:
    """``(1 - w) model + w LightGBM`` of a ``_scored`` frame."""
    return (1 - w) * scored["model_"] + w * scored["lightgbm_"]


def blend(test: pl.DataFrame, validation: pl.DataFrame, h: str, weights: tuple[float, ...], min_stocks: int) -> tuple[np.ndarray, dict]:
    """The blend's forecast of ``test``'s rows at ``h`` (both frames with ``pred_{h}``, ``lightgbm_{h}``
    and, validation, ``target_{h}``; walk-forward, a ``fold`` column), and what validation chose:
    {"weight", "val_rank_ic", "val_rank_ic_by_weight"}, walk-forward {"fold<k>": ...} per fold."""
    walk_forward = "fold" in test.columns
    test, validation = _scored(test, h), _scored(validation, h).filter(pl.col(f"target_{h}").is_finite())
    out, chosen = np.full(test.height, np.nan), {}
    for fold in sorted(test["fold"].unique()):
        rows = validation.filter(pl.col("fold") == fold)
        on_val = {w: mean_daily_rank_ic(rows["Date"].to_numpy(), _mixed(rows, w).to_numpy(), rows[f"target_{h}"].to_numpy(), min_stocks)
                  for w in weights}  # fmt: skip
        w = max(weights, key=lambda v: (on_val[v] if on_val[v] == on_val[v] else -1.0, -v))  # NaN (no scored date) last
        mine = (test["fold"] == fold).to_numpy()
        out[mine] = _mixed(test, w).to_numpy()[mine]
        chosen[f"fold{fold}"] = {"weight": w, "val_rank_ic": on_val[w], "val_rank_ic_by_weight": {str(v): s for v, s in on_val.items()}}
    return out, chosen if walk_forward else chosen["fold0"]


def chosen_weights(chosen: dict) -> float | dict[str, float]:
    """LightGBM's weight ``blend`` chose (its second value), or walk-forward {"fold<k>": weight}."""
    return chosen["weight"] if "weight" in chosen else {fold: c["weight"] for fold, c in chosen.items()}
