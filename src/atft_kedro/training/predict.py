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
