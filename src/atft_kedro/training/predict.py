"""Forecasts of a trained model: the median per horizon for every stock of every date, and the
daily RankIC that validation and the evaluation share."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import torch

from atft_kedro.evaluation.metrics import daily_scores, summarise
from atft_kedro.model import ATFTGATFAN
from atft_kedro.model.heads import QUANTILES
from atft_kedro.training.batches import autocast, make_loader
from atft_kedro.training.config import TrainConfig
from atft_kedro.training.data import HORIZON_KEYS, DateDataset, ResidentDates


@torch.no_grad()
def predict(model: ATFTGATFAN, dataset: DateDataset, cfg: TrainConfig, device: torch.device,
            resident: ResidentDates | None = None, quantiles: bool = False) -> pl.DataFrame:  # fmt: skip
    """Median forecasts (dropout off) for every date of ``dataset``: Date, Code, pred_{h}, target_{h}
    (and with ``quantiles`` every quantile of the head, ``q05_{h}`` .. ``q95_{h}``). One date per
    batch, from the device-resident arrays when given, else through a DataLoader."""
    model.eval()
    frames = []
    batches = (resident.batch([t]) for t in dataset.date_indices) if resident else make_loader(dataset, replace(cfg, mode="safe"))
    for batch in batches:
        b = batch.to(device)
        with autocast(device, cfg):
            out = model(b.x, b.market, b.date_of_node, b.neighbors, b.edge_attr)
        cols = {f"pred_{h}": out[h][:, 2].float().cpu().numpy() for h in HORIZON_KEYS if h in out}
        if quantiles:
            cols.update({f"q{round(q * 100):02d}_{h}": out[h][:, i].float().cpu().numpy()
                         for h in HORIZON_KEYS if h in out for i, q in enumerate(QUANTILES)})  # fmt: skip
        cols.update({f"target_{h}": batch.targets[h].cpu().numpy() for h in HORIZON_KEYS})
        frames.append(pl.DataFrame({"Date": np.repeat(batch.dates[0], len(batch.codes[0])), "Code": batch.codes[0], **cols}))
    return pl.concat(frames) if frames else pl.DataFrame()


def daily_rank_ic(predictions: pl.DataFrame, horizons, min_stocks: int) -> dict[str, float]:
    """Mean over dates of the Spearman correlation of prediction and target, per horizon (the
    evaluation's own metric, so validation and test are measured alike)."""
    return {
        h: summarise(daily_scores(predictions, f"pred_{h}", f"target_{h}", min_stocks))["rank_ic"] for h in horizons
    }
