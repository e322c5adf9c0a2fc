"""What the model's ranking rests on: the permutation importance of its feature groups, on validation.

For each group of the feature manifest (returns, volatility, liquidity, ...; the market context's
date-constant features are not stock inputs), the validation forecasts are made again with the
group's columns moved between stocks: on each date one random permutation of its stocks, the same
for every column of the group and every step of the window, so each stock carries another stock's
whole history of the group and its own of everything else. The graph stays as it is (the neighbour
paths then read the moved columns too). A group's worth at horizon h: the forecast's daily RankIC
minus the moved forecast's, with the Newey-West interval at lag h - 1 of the other paired
differences. Validation, the split where choices are made, so that reading it costs the test split
nothing. A group worth 0 is one the trained model does not use, or one whose information the other
groups carry too (the last day's return is in the returns, market-relative, sector and range groups
alike), so every feature is also moved at once (``ALL_FEATURES``): what the inputs are worth
together, the scale the groups' worths are read against.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from atft_kedro.evaluation.metrics import daily_scores, overlap_lag, paired_difference, summarise
from atft_kedro.training.data import DateDataset

ALL_FEATURES = "all features"


def feature_groups(manifest: list[dict], feature_names) -> dict[str, np.ndarray]:
    """The manifest's groups of the arrays' columns (``feature_names``, the stock features in their
    order) -> {group: its column indices}, groups in the manifest's order."""
    column = {name: i for i, name in enumerate(feature_names)}
    groups: dict[str, list[int]] = {}
    for m in manifest:
        if m["name"] in column:
            groups.setdefault(m["group"], []).append(column[m["name"]])
    missing = set(column) - {m["name"] for m in manifest}
    if missing:
        raise ValueError(f"the feature manifest does not list the model's features {sorted(missing)[:5]}: rebuild with kedro run --pipelines data_engineering")
    return {g: np.asarray(c) for g, c in groups.items()}


class ShuffledColumns(DateDataset):
    """``DateDataset`` whose items have ``columns`` of ``x`` moved between stocks: per date one
    permutation of its stocks (drawn from ``seed`` and the date's index, so every pass and every
    process moves them alike), the same for each of the columns and steps."""

    def __init__(self, arrays, graphs, date_indices, window: int, columns, seed: int = 0):
        super().__init__(arrays, graphs, date_indices, window)
        self.columns, self.seed = torch.as_tensor(np.asarray(columns), dtype=torch.long), int(seed)

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        x = item["x"]  # (N, T, F), the item's own copy
        order = torch.from_numpy(np.random.default_rng([self.seed, int(self.date_indices[i])]).permutation(x.shape[0]))
        x[:, :, self.columns] = x[order][:, :, self.columns]
        return item


def group_importance(reference: pl.DataFrame, moved: dict[str, pl.DataFrame], min_stocks: int) -> dict[str, dict]:
    """``reference``: the model's forecasts (Date, Code, pred_{h}, target_{h}); ``moved``: {group:
    the same with the group moved} -> {group: {h: {"rank_ic_moved": its RankIC, "worth": the
    reference's daily RankIC minus the moved one's, mean and 95% interval}}}."""
    horizons = [c.removeprefix("pred_") for c in reference.columns if c.startswith("pred_")]
    base = {h: daily_scores(reference, f"pred_{h}", f"target_{h}", min_stocks) for h in horizons}
    out = {}
    for group, frame in moved.items():
        out[group] = {}
        for h in horizons:
            scores = daily_scores(frame, f"pred_{h}", f"target_{h}", min_stocks)
            out[group][h] = {"rank_ic_moved": summarise(scores)["rank_ic"], "worth": paired_difference(base[h], scores, overlap_lag(h))}
    return out
