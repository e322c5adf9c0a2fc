"""Walk-forward train / validation / test splits by global dates, with purge and embargo.

Dates are cut in time order. Between train and validation, and between validation and test, a gap
of ``purge_days + embargo_days`` trading days is left out: the purge (at least the longest target
horizon) makes sure no training label reaches into the next block, the embargo adds room for serial
correlation. With ``n_folds > 1`` the test blocks are the last ``n_folds`` consecutive blocks and each
fold trains on everything before its own validation block (an expanding window).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class SplitConfig:
    warmup_days: int = 60
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    purge_days: int = 20
    embargo_days: int = 20
    n_folds: int = 1


def make_splits(dates: list | pl.Series, cfg: SplitConfig) -> pl.DataFrame:
    """Sorted unique dates -> frame (fold, Date, split) with split in {train, val, test}; dates in
    warm-up or gaps are absent."""
    dates = pl.Series("Date", dates).unique().sort()
    usable = dates[cfg.warmup_days :]
    gap = cfg.purge_days + cfg.embargo_days
    n = len(usable)
    test_len = max(1, int(round(n * cfg.test_fraction / cfg.n_folds)))
    val_len = max(1, int(round(n * cfg.val_fraction)))
    rows = []
    for fold in range(cfg.n_folds):
        test_end = n - (cfg.n_folds - 1 - fold) * test_len
        test_start = test_end - test_len
        val_end = test_start - gap
        val_start = val_end - val_len
        train_end = val_start - gap
        if train_end < 2 * gap:
            raise ValueError(
                f"too few dates for the splits: {len(dates)} dates leave {max(train_end, 0)} training dates in "
                f"fold {fold} after warm-up {cfg.warmup_days}, purge {cfg.purge_days} and embargo "
                f"{cfg.embargo_days}; use a longer history or smaller fractions"
            )
        for name, lo, hi in (("train", 0, train_end), ("val", val_start, val_end), ("test", test_start, test_end)):
            rows.append(pl.DataFrame({"fold": fold, "Date": usable[lo:hi], "split": name}))
    return pl.concat(rows).with_columns(pl.col("fold").cast(pl.Int32))


def split_dates(splits: pl.DataFrame, name: str, fold: int | None = 0) -> pl.Series:
    """The dates of one split (train, val or test) of ``fold`` (``None``: of every fold), in order."""
    rows = splits.filter(pl.col("split") == name)
    if fold is not None:
        rows = rows.filter(pl.col("fold") == fold)
    return rows["Date"].unique().sort()
