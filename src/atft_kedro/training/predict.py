"""Forecasts of a trained model: the median per horizon for every stock of every date, and the
daily RankIC that validation and the evaluation share."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import torch

from atft_kedro.allocator import freed_memory_kept
from atft_kedro.evaluation.metrics import DailyScores, daily_scores, summarise
from atft_kedro.model import ATFTGATFAN, PARTS
from atft_kedro.model.heads import QUANTILES
from atft_kedro.training.batches import autocast, dates_per_step, make_loader
from atft_kedro.training.config import TrainConfig
from atft_kedro.training.data import HORIZON_KEYS, DateDataset, ResidentDates


@torch.no_grad()
def predict(model: ATFTGATFAN, dataset: DateDataset, cfg: TrainConfig, device: torch.device,
            resident: ResidentDates | None = None, quantiles: bool = False, parts: bool = False) -> pl.DataFrame:  # fmt: skip
    """Median forecasts (dropout off) for every date of ``dataset``: Date, Code, pred_{h}, target_{h}
    (with ``quantiles`` every quantile of the head, ``q05_{h}`` .. ``q95_{h}``; with ``parts`` the
    median's additive paths, ``part_network_{h}``, ``part_own_{h}``, ``part_neighbours_{h}``, which
    sum to ``pred_{h}`` up to rounding: ``model.PARTS``). As many dates a
    batch as a training step takes (safe mode: one; optimized: ``dates_per_batch``, in date order),
    from the device-resident arrays when given, else through a DataLoader.

    Through a DataLoader a call advances torch's generator by one draw (the loader's base seed), so
    the dropout draws of the training that follows depend on how many forecasts came before it.
    Every run's validation passes are part of its recipe; a forecast added only to inspect or to
    choose something that should leave training as it was runs inside ``torch.random.fork_rng``
    (as ``starts.choose_skip_starts`` does)."""
    with freed_memory_kept(cfg.keep_freed_memory):
        return _predict(model, dataset, cfg, device, resident, quantiles, parts)


def _predict(model, dataset, cfg, device, resident, quantiles, parts) -> pl.DataFrame:
    model.eval()
    frames = []
    per = dates_per_step(cfg)
    if resident is not None:
        batches = (resident.batch(dataset.date_indices[i : i + per]) for i in range(0, len(dataset), per))
    else:
        batches = make_loader(dataset, replace(cfg, num_workers=0))  # in order, in this process
    for batch in batches:
        b = batch.to(device)
        with autocast(device, cfg):
            out = model(b.x, b.market, b.date_of_node, b.neighbors, b.edge_attr, parts=parts)
        cols = {f"pred_{h}": out[h][:, 2].float().cpu().numpy() for h in HORIZON_KEYS if h in out}
        if parts:
            cols.update({f"part_{name}_{h}": p[:, i].float().cpu().numpy() for h, p in out["parts"].items() for i, name in enumerate(PARTS)})
        if quantiles:
            cols.update({f"q{round(q * 100):02d}_{h}": out[h][:, i].float().cpu().numpy()
                         for h in HORIZON_KEYS if h in out for i, q in enumerate(QUANTILES)})  # fmt: skip
        cols.update({f"target_{h}": batch.targets[h].cpu().numpy() for h in HORIZON_KEYS})
        dates = np.repeat(np.asarray(batch.dates), [len(c) for c in batch.codes])  # the nodes are laid out date by date
        frames.append(pl.DataFrame({"Date": dates, "Code": np.concatenate(batch.codes), **cols}))
    return pl.concat(frames) if frames else pl.DataFrame()


def daily_rank_ic(predictions: pl.DataFrame, horizons, min_stocks: int) -> dict[str, float]:
    """Mean over dates of the Spearman correlation of prediction and target, per horizon (the
    evaluation's own metric, so validation and test are measured alike)."""
    return mean_rank_ics(rank_ic_by_date(predictions, horizons, min_stocks))


def mean_rank_ics(daily: dict[str, DailyScores]) -> dict[str, float]:
    """Per horizon, the mean over its dates of ``rank_ic_by_date``'s RankIC."""
    return {h: summarise(d)["rank_ic"] for h, d in daily.items()}


def rank_ic_by_date(predictions: pl.DataFrame, horizons, min_stocks: int) -> dict[str, DailyScores]:
    """``daily_rank_ic`` before the mean: per horizon, the scored dates and their RankIC."""
    return {h: daily_scores(predictions, f"pred_{h}", f"target_{h}", min_stocks) for h in horizons}


FORECAST_PARAMETERS = ("one_day_share",)  # the keys of `forecast` in conf/base/parameters.yml


def one_day_share(forecast: dict | None) -> float:
    """The ``forecast`` parameters' ``one_day_share``, checked (None or unset: 0, the heads as they are)."""
    return _checked_share((forecast or {}).get("one_day_share", 0.0))


def _checked_share(share) -> float:
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
        raise ValueError(f"one_day_share is the 1-day forecast's share of each long forecast, in [0, 1), got {share!r}")
    return float(share)


def lean_on_one_day(predictions: pl.DataFrame, share: float) -> pl.DataFrame:
    """Each long horizon's forecast (5-20 days) with the 1-day forecast added, so that ``share`` of
    its ranking's weight is the 1-day forecast's: per date, ``pred_h + c * (pred_1d - its mean)``
    with ``c = share / (1 - share) * sd(pred_h) / sd(pred_1d)``, the same date's spreads. That ranks
    the stocks as ``(1 - share) * z(pred_h) + share * z(pred_1d)`` does (``z``: the date's z-score),
    and keeps the date's mean forecast. The long horizon's quantiles (``q05_h`` ..) move with its
    median, and each additive path (``part_{path}_h``) gains its 1-day path's share, so the paths
    still sum to the forecast. An h-day return holds the next day's, which the 1-day head learns from
    the most independent outcomes (docs/what_training_has_shown.md, the twenty-fifth session).
    ``share`` 0: the heads as they are. Dates are the groups, so walk-forward frames (a date in one
    fold) and inference (one date) lean alike."""
    share = _checked_share(share)
    long = [c.removeprefix("pred_") for c in predictions.columns if c.startswith("pred_") and c != "pred_1d"]
    if share == 0.0 or "pred_1d" not in predictions.columns or not long:
        return predictions
    spread = lambda c: pl.col(c).std().over("Date")  # noqa: E731
    centred = lambda c: pl.col(c) - pl.col(c).mean().over("Date")  # noqa: E731
    moved = {}
    for h in long:
        scale = pl.when(spread("pred_1d") > 0).then(share / (1.0 - share) * spread(f"pred_{h}") / spread("pred_1d")).otherwise(0.0)
        for c in predictions.columns:
            if c == f"pred_{h}" or (c.startswith("q") and c.endswith(f"_{h}")):  # the median and its quantiles move alike
                moved[c] = pl.col(c) + scale * centred("pred_1d")
            elif c.startswith("part_") and c.endswith(f"_{h}") and (one_day := c.removesuffix(f"_{h}") + "_1d") in predictions.columns:
                moved[c] = pl.col(c) + scale * centred(one_day)
    return predictions.with_columns(**moved)
