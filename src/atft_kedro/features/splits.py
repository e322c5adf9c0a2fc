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


def _least_training(cfg: SplitConfig) -> int:
    """The fewest training dates a fold may have: twice the gap between its blocks."""
    return 2 * (cfg.purge_days + cfg.embargo_days)


def _blocks(n: int, cfg: SplitConfig) -> list[tuple[int, int, int, int, int]]:
    """Per fold, (train_end, val_start, val_end, test_start, test_end) as positions among ``n``
    dates after the warm-up; training is [0, train_end)."""
    gap = cfg.purge_days + cfg.embargo_days
    test_len = max(1, int(round(n * cfg.test_fraction / cfg.n_folds)))
    val_len = max(1, int(round(n * cfg.val_fraction)))
    blocks = []
    for fold in range(cfg.n_folds):
        test_end = n - (cfg.n_folds - 1 - fold) * test_len
        test_start = test_end - test_len
        val_start = test_start - gap - val_len
        blocks.append((val_start - gap, val_start, val_start + val_len, test_start, test_end))
    return blocks


def _dates_needed(cfg: SplitConfig, have: int) -> int | None:
    """The fewest dates (more than ``have``) whose splits leave every fold its training minimum;
    None when no history up to 100 times ``have`` would (fractions that leave training nothing)."""
    least = _least_training(cfg)
    for total in range(have + 1, 100 * max(have, 100)):
        if all(b[0] >= least for b in _blocks(total - cfg.warmup_days, cfg)):
            return total
    return None


def make_splits(dates: list | pl.Series, cfg: SplitConfig) -> pl.DataFrame:
    """Sorted unique dates -> frame (fold, Date, split) with split in {train, val, test}; dates in
    warm-up or gaps are absent."""
    dates = pl.Series("Date", dates).unique().sort()
    usable = dates[cfg.warmup_days :]
    least = _least_training(cfg)
    rows = []
    for fold, (train_end, val_start, val_end, test_start, test_end) in enumerate(_blocks(len(usable), cfg)):
        if train_end < least:
            needed = _dates_needed(cfg, len(dates))
            raise ValueError(
                f"too few dates for the splits: {len(dates)} dates leave {max(train_end, 0)} training dates in "
                f"fold {fold} (at least {least}, twice purge and embargo) after warm-up {cfg.warmup_days}, purge "
                f"{cfg.purge_days} and embargo {cfg.embargo_days}"
                + (f"; these splits need at least {needed} dates" if needed else "")
                + ": use a longer history or smaller fractions" + (" or fewer folds" if cfg.n_folds > 1 else "")
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


def kept_fold(splits: pl.DataFrame) -> int:
    """The fold whose model a run keeps: the last (a walk-forward run's model is its last fold's,
    trained on the most recent data; a one-fold run has fold 0 alone). Training keeps it; inference
    and tuning read its dates."""
    return int(splits["fold"].max())
