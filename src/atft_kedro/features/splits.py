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

from atft_kedro.checks import whole_number


@dataclass(frozen=True)
class SplitConfig:
    warmup_days: int = 60
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    purge_days: int = 20
    embargo_days: int = 20
    n_folds: int = 1

    def __post_init__(self):
        from atft_kedro.data.schema import HORIZONS

        if not whole_number(self.purge_days, max(HORIZONS)):  # SPEC section 3: a purge of at least the longest horizon
            raise ValueError(f"splits.purge_days must be at least the longest target horizon, {max(HORIZONS)} trading days, got "
                             f"{self.purge_days!r}: a training date's {max(HORIZONS)}-day target would reach into the validation "
                             "and test dates' returns")  # fmt: skip
        for name in ("warmup_days", "embargo_days"):
            if not whole_number(getattr(self, name), 0):
                raise ValueError(f"splits.{name} is a whole number of trading days >= 0, got {getattr(self, name)!r}")
        if not whole_number(self.n_folds, 1):
            raise ValueError(f"splits.n_folds is a whole number >= 1, got {self.n_folds!r}")
        if not (0 < self.val_fraction and 0 < self.test_fraction and self.val_fraction + self.test_fraction < 1):
            raise ValueError(f"splits.val_fraction and test_fraction are each > 0 and together < 1, got {self.val_fraction!r} and {self.test_fraction!r}")


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
