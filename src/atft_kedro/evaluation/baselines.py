"""Baseline scores, computed on the same dates as the model: 20-day momentum, 1-day reversal, a
ridge regression and a LightGBM model on the model's own features (the last day's, as the model's
linear skip sees them), and the oracle.

Ridge and LightGBM are fitted on the training split and tuned on the validation split only, as a
quant researcher would tune them against the model: the ridge penalty is the one of ``ridge_alphas``
with the best mean daily validation RankIC, and LightGBM's number of trees is chosen by early
stopping on the same measure. Both learn each date's target less its cross-sectional mean (only
the ranking within a date matters). LightGBM runs on the CPU with a fixed seed and its
deterministic mode, so a rerun gives the same scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from atft_kedro.checks import whole_number
from atft_kedro.features.splits import split_dates
from atft_kedro.threads import torch_threads


@dataclass(frozen=True)
class LightGBMConfig:
    """LightGBM's settings (``lightgbm.train`` parameters); the number of trees is early-stopped."""

    num_leaves: int = 15
    learning_rate: float = 0.03
    min_data_in_leaf: int = 200
    feature_fraction: float = 0.5
    bagging_fraction: float = 0.8
    lambda_l2: float = 10.0
    max_trees: int = 1000
    early_stopping: int = 100  # trees without a better validation RankIC before stopping
    seed: int = 0
    bag: int = 1  # fits with seeds seed .. seed + bag - 1, each early-stopped, their forecasts averaged

    def __post_init__(self):
        for name in ("bag", "max_trees", "early_stopping", "num_leaves"):
            value, least = getattr(self, name), 2 if name == "num_leaves" else 1
            if not whole_number(value, least):
                raise ValueError(f"lightgbm.{name} is a whole number >= {least}, got {value!r}")


@dataclass(frozen=True)
class BaselineConfig:
    ridge_alphas: tuple[float, ...] = (10.0, 100.0, 1000.0, 10000.0, 100000.0, 1e6, 1e7, 1e8)
    lightgbm: LightGBMConfig = field(default_factory=LightGBMConfig)
    min_stocks: int = 20

    def __post_init__(self):
        if not self.ridge_alphas or not all(a > 0 for a in self.ridge_alphas):
            raise ValueError(f"ridge_alphas are the ridge baseline's penalties validation chooses among, each > 0, got {list(self.ridge_alphas)!r}")

    @classmethod
    def from_params(cls, params: dict) -> "BaselineConfig":
        return cls(tuple(float(a) for a in params["ridge_alphas"]), LightGBMConfig(**params.get("lightgbm", {})), params["min_stocks"])


def _rows(model_input: pl.DataFrame, feature_names: list[str], target: str, dates) -> pl.DataFrame:
    """The rows of ``dates`` with a finite target, the target less its date's mean: the columns
    chosen first and the rows filtered once (one copy of them; at the full size the training rows
    of one horizon are 1 GB a copy). (Eager on purpose: the same query made lazy collects the rows
    in chunks that the date means sum in an order that varies from call to call, so the fits'
    last bits would too.)"""
    return (
        model_input.select("Date", *feature_names, target)
        .filter(_kept(target, dates))
        .with_columns((pl.col(target) - pl.col(target).mean().over("Date")).alias(target))
    )


def _kept(target: str, dates) -> pl.Expr:
    """Which rows ``_rows`` keeps: of ``dates``, with a finite ``target`` (False, not null, where it is missing)."""
    return (pl.col("Date").is_in(pl.Series(dates).implode()) & pl.col(target).is_not_null() & pl.col(target).is_finite()).fill_null(False)


def _row_matrix(model_input: pl.DataFrame, feature_names: list[str], target: str, dates) -> tuple[np.ndarray, pl.DataFrame]:
    """``_rows``' rows as (their features as one array [rows, features], Fortran order, the dtype
    ``DataFrame.to_numpy`` gives them; their Date and target as ``_rows`` makes them), the array
    filled a column at a time from ``model_input``: no frame of the rows' features is held beside
    it."""
    keep = model_input.select(_kept(target, dates)).to_series()
    rows = _rows(model_input, [], target, dates)
    x = np.empty((rows.height, len(feature_names)), dtype=pl.DataFrame(schema={n: model_input.schema[n] for n in feature_names}).to_numpy().dtype,
                 order="F")  # fmt: skip
    for j, name in enumerate(feature_names):
        x[:, j] = model_input[name].filter(keep).to_numpy()
    return x, rows


def daily_rank_ic(dates: np.ndarray, score: np.ndarray, target: np.ndarray, min_stocks: int) -> pl.DataFrame:
    """Per date with at least ``min_stocks`` rows, in the order the dates first come: the Spearman
    correlation of ``score`` and ``target`` -> frame (d, n, r)."""
    return (
        pl.DataFrame({"d": dates, "s": score, "y": target})
        .group_by("d", maintain_order=True)  # the dates in order: a mean sums them the same way in every run, to the bit
        .agg(pl.len().alias("n"), pl.corr("s", "y", method="spearman").alias("r"))
        .filter((pl.col("n") >= min_stocks) & pl.col("r").is_not_nan())
    )


def mean_daily_rank_ic(dates: np.ndarray, score: np.ndarray, target: np.ndarray, min_stocks: int) -> float:
    """The mean over dates (with at least ``min_stocks`` rows) of the Spearman correlation."""
    per_date = daily_rank_ic(dates, score, target, min_stocks)
    return float(per_date["r"].mean()) if per_date.height else float("nan")


def fit_ridge(model_input: pl.DataFrame, feature_names: list[str], target: str, train_dates, alpha: float) -> np.ndarray:
    """Ridge coefficients (with intercept last) on training rows only; the target is demeaned per
    date, since only the cross-section matters."""
    return solve_ridge_gram(*frame_products(_rows(model_input, feature_names, target, train_dates), feature_names, target), alpha)


def tuned_ridge(model_input, feature_names, target, train_dates, val_dates, cfg: BaselineConfig) -> tuple[np.ndarray, dict]:
    """The ridge of the penalty with the best validation RankIC -> (coefficients, {"alpha", "val_rank_ic"})."""
    val = _rows(model_input, feature_names, target, val_dates)
    x_val, best = val.select(feature_names).to_numpy().astype(np.float64), None
    gram, moment = frame_products(_rows(model_input, feature_names, target, train_dates), feature_names, target)
    for alpha in cfg.ridge_alphas:  # each as fit_ridge(..., alpha) gives it, the products shared
        coef = solve_ridge_gram(gram, moment, alpha)
        score = mean_daily_rank_ic(val["Date"].to_numpy(), x_val @ coef[:-1], val[target].to_numpy(), cfg.min_stocks)
        if best is None or score > best[1]["val_rank_ic"]:
            best = coef, {"alpha": alpha, "val_rank_ic": score}
    return best


def lightgbm_params(g: LightGBMConfig) -> dict:
    """``lightgbm.train``'s parameters for ``g``: CPU, fixed seed, deterministic."""
    return {
        "objective": "regression", "learning_rate": g.learning_rate, "num_leaves": g.num_leaves,
        "min_data_in_leaf": g.min_data_in_leaf, "feature_fraction": g.feature_fraction,
        "bagging_fraction": g.bagging_fraction, "bagging_freq": 1, "lambda_l2": g.lambda_l2,
        "seed": g.seed, "deterministic": True, "force_row_wise": True, "verbosity": -1,
    }  # fmt: skip


def tuned_lightgbm(model_input, feature_names, target, train_dates, val_dates, cfg: BaselineConfig):
    """LightGBM on the training rows, trees early-stopped on the validation RankIC -> (booster,
    {"trees", "val_rank_ic"})."""
    import lightgbm as lgb

    (x, train), (x_val, val) = (_row_matrix(model_input, feature_names, target, d) for d in (train_dates, val_dates))
    g = cfg.lightgbm
    params = lightgbm_params(g)
    val_dates_rows, val_y = val["Date"].to_numpy(), val[target].to_numpy()

    def rank_ic(preds, _data):
        return "rank_ic", mean_daily_rank_ic(val_dates_rows, preds, val_y, cfg.min_stocks), True

    dtrain = lgb.Dataset(x, train[target].to_numpy(), free_raw_data=True)
    dval = lgb.Dataset(x_val, val_y, reference=dtrain)
    del x, x_val  # the datasets' own references go once LightGBM has binned them (``free_raw_data``)
    params["metric"] = "None"  # early stopping on the validation RankIC alone
    booster = lgb.train(params, dtrain, g.max_trees, valid_sets=[dval], feval=rank_ic,
                        callbacks=[lgb.early_stopping(g.early_stopping, verbose=False)])  # fmt: skip
    return booster, {"trees": booster.best_iteration, "val_rank_ic": float(booster.best_score["valid_0"]["rank_ic"])}


def bagged_lightgbm(model_input, feature_names, target, train_dates, val_dates, cfg: BaselineConfig, x: np.ndarray):
    """``tuned_lightgbm`` with each of ``cfg.lightgbm.bag`` seeds (from ``cfg.lightgbm.seed``) -> (the
    mean of their forecasts of ``x``, {"trees": each fit's, "val_rank_ic": the mean forecast's}).
    With ``bag`` 1 it is the one fit, to the bit."""
    g = cfg.lightgbm  # bag >= 1: LightGBMConfig's check
    fits = [tuned_lightgbm(model_input, feature_names, target, train_dates, val_dates, replace(cfg, lightgbm=replace(g, seed=g.seed + i)))
            for i in range(g.bag)]  # fmt: skip
    forecast = np.mean([b.predict(x, num_iteration=b.best_iteration) for b, _ in fits], axis=0)
    if g.bag == 1:
        return forecast, fits[0][1]
    val = _rows(model_input, feature_names, target, val_dates)
    together = np.mean([b.predict(val.select(feature_names).to_numpy(), num_iteration=b.best_iteration) for b, _ in fits], axis=0)
    score = mean_daily_rank_ic(val["Date"].to_numpy(), together, val[target].to_numpy(), cfg.min_stocks)
    return forecast, {"trees": [info["trees"] for _, info in fits], "val_rank_ic": score}


def ridge_solve(x: np.ndarray, y: np.ndarray, alpha: float, weights: np.ndarray | None = None) -> np.ndarray:
    """Ridge coefficients of ``y`` on ``x [rows, features]`` plus an unpenalised intercept (last);
    with ``weights`` (one per row), of the weighted squared error: the ordinary fit of the rows
    (the intercept's column included) scaled by the weights' square roots.

    The products run on one torch thread, so the coefficients are the same bits however many threads
    the process has: numpy's BLAS splits ``x.T @ x`` by its thread count and rounds differently with
    each, and training starts its linear paths at these fits (safe mode repeats to the bit)."""
    return solve_ridge_design(with_intercept(x), y, alpha, weights)


_BLOCK_ROWS = 1 << 16  # with_intercept's selection, rows a block (a few tens of MB of features)


def with_intercept(x: np.ndarray, rows: np.ndarray | None = None, clip: float = math.inf, extra: np.ndarray | None = None,
                   zeroed: int = 0) -> np.ndarray:  # fmt: skip
    """The design of a ridge fit, ``[x, extra, 1]`` in float64, of ``x``'s rows where ``rows`` is
    True (all without it), ``x`` winsorised at ``clip`` and its first ``zeroed`` columns read as 0:
    made in one array, so that a fit on millions of rows holds ``x`` and its design and no other
    copy (the full-size market's linear starts fit 2.7 million rows of about 100 features, 2.2 GB a
    copy). The same values as ``np.hstack([np.clip(x[rows], -clip, clip), extra[rows], 1])``,
    which would hold ``x[rows]`` beside the design."""
    rows = None if rows is None or rows.all() else rows  # every row: no selection to make
    n = len(x) if rows is None else int(np.count_nonzero(rows))
    f, e = x.shape[1], 0 if extra is None else extra.shape[1]
    design = np.empty((n, f + e + 1))
    own = design[:, :f]
    if rows is None:
        own[...] = x
    else:  # a block of rows at a time: np.compress (np.take) into a strided ``out`` fills a whole hidden copy first
        kept = np.flatnonzero(rows)
        for start in range(0, n, _BLOCK_ROWS):
            own[start : start + _BLOCK_ROWS] = x[kept[start : start + _BLOCK_ROWS]]
    if clip != math.inf:
        np.clip(own, -clip, clip, out=own)
    own[:, :zeroed] = 0.0
    if extra is not None:
        design[:, f : f + e] = extra if rows is None else extra[rows]
    design[:, -1] = 1.0
    return design


def solve_ridge_design(design: np.ndarray, y: np.ndarray, alpha: float, weights: np.ndarray | None = None) -> np.ndarray:
    """``ridge_solve`` on its design (``with_intercept``'s: the intercept's column last, unpenalised):
    the design's products, then ``solve_ridge_gram``."""
    import torch

    y = np.array(y, dtype=np.float64, order="C")  # its own copy: a read-only array (polars') would make torch warn
    if weights is not None:
        root = np.sqrt(np.asarray(weights, dtype=np.float64))
        design, y = design * root[:, None], y * (root if y.ndim == 1 else root[:, None])
    x = torch.from_numpy(design)
    with torch_threads(1):
        return solve_ridge_gram(x.T @ x, x.T @ torch.from_numpy(y), alpha)


def frame_products(frame: pl.DataFrame, feature_names: list[str], target: str):
    """The products of a ridge fit of ``frame``'s ``target`` on its ``feature_names`` with an
    intercept, D'D and D'y (D = [features, 1] in float64; torch tensors, ``solve_ridge_gram``'s
    inputs), summed a block of rows at a time from the frame's columns: the fit holds neither the
    rows' float64 design nor a numpy copy of the frame (at the full size 2.6 million training rows
    of 91 features: 1.9 GB and 0.9 GB, each horizon)."""
    import torch

    n = len(feature_names) + 1
    gram, moment = torch.zeros((n, n), dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    block = np.empty((min(frame.height, _BLOCK_ROWS), n))
    for start in range(0, frame.height, _BLOCK_ROWS):
        part = frame.slice(start, _BLOCK_ROWS)
        design = block[: part.height]
        for j, name in enumerate(feature_names):
            design[:, j] = part[name].to_numpy()
        design[:, -1] = 1.0
        d = torch.from_numpy(design)
        with torch_threads(1):
            gram += d.T @ d
            moment += d.T @ torch.from_numpy(part[target].to_numpy().astype(np.float64))
    return gram, moment


def solve_ridge_gram(gram, moment, alpha: float) -> np.ndarray:
    """The ridge coefficients from a design's products alone, ``gram`` = D'D and ``moment`` = D'y
    (float64 torch tensors; the intercept's column last, unpenalised): a fit whose rows are summed
    up date by date never holds them together."""
    import torch

    penalty = alpha * torch.eye(gram.shape[0], dtype=torch.float64)
    penalty[-1, -1] = 0.0
    with torch_threads(1):
        return torch.linalg.solve(gram + penalty, moment).numpy()


def covariance_weights(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The ridge's limit as its penalty grows, up to a positive scale: each column of ``x`` weighted
    by its covariance with ``y``, X_c' y (X_c: ``x`` less its column means), made as X' y less the
    means times y's sum, so no centred copy of ``x`` is held. Its ranking is the ridge's at any
    penalty far above the design's eigenvalues. On one torch thread: the same bits on any core
    count, as ``ridge_solve``'s."""
    import torch

    x = torch.from_numpy(np.asarray(x, dtype=np.float64))
    y = torch.from_numpy(np.array(y, dtype=np.float64, order="C"))
    with torch_threads(1):
        return (x.T @ y - x.mean(dim=0) * y.sum()).numpy()


def ridge_scores(model_input: pl.DataFrame, feature_names: list[str], coef: np.ndarray) -> np.ndarray:
    x = model_input.select(feature_names).to_numpy().astype(np.float64)
    return x @ coef[:-1] + coef[-1]


SIGNALS = {"momentum_20d": ("ret_20d", 1.0), "reversal_1d": ("ret_1d", -1.0)}  # name -> (feature, sign)
SIGNAL_FEATURES = sorted({feature for feature, _ in SIGNALS.values()})  # the features the one-feature baselines read
LIQUIDITY = "amihud_20d"  # the 20-day Amihud illiquidity (higher: less liquid), the evaluation's liquidity buckets
LIQUIDITY_BUCKETS = ["most liquid", "middle", "least liquid"]  # each date's stocks cut into these by LIQUIDITY, lowest first


def baseline_features(features: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The columns of ``features`` the baselines read (``baseline_frame``'s: Date, Code, the
    ``SIGNALS``' features, beta_60d and ``LIQUIDITY`` where it is there), read alone from a lazy
    frame (a parquet scan reads no other column)."""
    names = features.collect_schema().names() if isinstance(features, pl.LazyFrame) else features.columns
    wanted = ["Date", "Code", *SIGNAL_FEATURES, "beta_60d", *([LIQUIDITY] if LIQUIDITY in names else [])]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"the features table has no column {', '.join(missing)}, which the evaluation's baselines read: "
                         "build the features again (kedro run --pipelines data_engineering)")  # fmt: skip
    chosen = features.select(wanted)
    return chosen.collect() if isinstance(chosen, pl.LazyFrame) else chosen


def signals_on_validation(features: pl.DataFrame, model_input: pl.DataFrame, target: str, val_dates, min_stocks: int) -> dict[str, dict]:
    """Each one-feature baseline's (``SIGNALS``) mean daily RankIC on the validation dates, as the
    ridge's and LightGBM's tuning reports theirs -> {name: {"val_rank_ic"}}."""
    rows = _rows(model_input, ["Code"], target, val_dates)  # _rows reads only these columns of model_input
    rows = rows.join(features.select("Date", "Code", *SIGNAL_FEATURES), on=["Date", "Code"], how="left")
    out = {}
    for name, (feature, sign) in SIGNALS.items():
        scored = rows.filter(pl.col(feature).is_finite())  # null or NaN (a stock's first days): not scored
        score = sign * scored[feature].to_numpy()
        out[name] = {"val_rank_ic": mean_daily_rank_ic(scored["Date"].to_numpy(), score, scored[target].to_numpy(), min_stocks)}
    return out


def signal_columns() -> list[pl.Expr]:
    """The one-feature baselines (``SIGNALS``), as columns of the features frame: 20-day momentum
    (``ret_20d``) and 1-day reversal (minus ``ret_1d``)."""
    return [(pl.col(feature) * sign).alias(name) for name, (feature, sign) in SIGNALS.items()]


def row_folds(frame: pl.DataFrame) -> np.ndarray:
    """The walk-forward fold that scores each row of ``frame`` (its ``fold`` column; 0 for every row
    of a run of one fold)."""
    return frame["fold"].to_numpy() if "fold" in frame.columns else np.zeros(frame.height, dtype=int)


def features_of(rows: pl.DataFrame, model_input: pl.DataFrame, feature_names: list[str]) -> np.ndarray:
    """The features of ``rows`` (Date, Code) from ``model_input``, in the rows' order (NaN where a row
    is not there): the baselines' inputs for forecasting given rows."""
    return rows.select("Date", "Code").join(model_input, on=["Date", "Code"], how="left", maintain_order="left").select(feature_names).to_numpy()


def baseline_frame(
    predictions: pl.DataFrame,
    features: pl.DataFrame | pl.LazyFrame,
    model_input: pl.DataFrame,
    oracle: pl.DataFrame,
    splits: pl.DataFrame,
    feature_names: list[str],
    horizons: list[str],
    cfg: BaselineConfig,
    validation: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, dict, pl.DataFrame | None]:
    """predictions (Date, Code, pred_{h}, target_{h}) joined with every baseline's score columns:
    momentum_20d, reversal_1d, ridge_{h}, lightgbm_{h}, oracle_{h} (oracle only when ``oracle`` has
    rows), each stock's beta_60d and Sector33Code (to score without the market and sectors), its
    ``LIQUIDITY`` as it was known at t where the features have it (to score within liquidity
    buckets) and ``traded`` (which stocks the long-short book may hold)
    -> (frame, {"momentum_20d" and "reversal_1d": {h: {"val_rank_ic"}}, "ridge": {h: {"alpha",
    "val_rank_ic"}}, "lightgbm": {h: {"trees", "val_rank_ic"}}}: each baseline's validation RankIC,
    and what tuning chose; walk-forward: per fold}, LightGBM's forecasts of ``validation``'s rows or
    None). ``validation`` (Date, Code and, walk-forward, fold: the model's validation forecasts): the
    same LightGBM fits forecast these rows too (``lightgbm_{h}``), for choices made on validation."""
    keys = predictions.select("Date", "Code")
    # every join keeps the predictions' row order: the ridge scores below are placed by position
    features = baseline_features(features)  # a lazy frame: only these columns are read
    liquidity = [LIQUIDITY] if LIQUIDITY in features.columns else []
    raw = keys.join(features, on=["Date", "Code"], how="left", maintain_order="left")
    out = predictions.join(
        raw.select("Date", "Code", *signal_columns(), "beta_60d", *liquidity),
        on=["Date", "Code"], how="left", maintain_order="left",
    )  # fmt: skip
    rows = keys.join(model_input, on=["Date", "Code"], how="left", maintain_order="left")
    out = out.with_columns(rows["Sector33Code"], *([rows["traded"]] if "traded" in rows.columns else []))  # which stocks the book may hold at t
    x = rows.select(feature_names).to_numpy()
    # walk-forward (predictions with a fold column): each fold's rows scored by baselines fitted on
    # that fold's training and validation dates, as the model was
    folds = sorted(predictions["fold"].unique()) if "fold" in predictions.columns else [0]
    of_fold = row_folds(predictions)
    info = {name: {} for name in (*SIGNALS, "ridge", "lightgbm")}
    on_val = predictions.clear() if validation is None else validation
    on_val = on_val.select("Date", "Code", *(["fold"] if "fold" in on_val.columns else []))
    x_val, val_fold = features_of(on_val, model_input, feature_names), row_folds(on_val)
    for h in horizons:
        ridge, boosted, boosted_val = np.full(len(rows), np.nan), np.full(len(rows), np.nan), np.full(on_val.height, np.nan)
        for fold in folds:
            train_dates, val_dates = (split_dates(splits, s, fold) for s in ("train", "val"))
            coef, ridge_info = tuned_ridge(model_input, feature_names, f"target_{h}", train_dates, val_dates, cfg)
            mine, theirs = of_fold == fold, val_fold == fold
            both, lgbm_info = bagged_lightgbm(model_input, feature_names, f"target_{h}", train_dates, val_dates, cfg, np.vstack([x[mine], x_val[theirs]]))
            boosted[mine], boosted_val[theirs] = both[: mine.sum()], both[mine.sum() :]
            ridge[mine] = ridge_scores(rows, feature_names, coef)[mine]
            tuned = {**signals_on_validation(features, model_input, f"target_{h}", val_dates, cfg.min_stocks), "ridge": ridge_info, "lightgbm": lgbm_info}
            for name, fitted in tuned.items():
                info[name][h] = fitted if len(folds) == 1 else {**info[name].get(h, {}), f"fold{fold}": fitted}
        out = out.with_columns(pl.Series(f"ridge_{h}", ridge), pl.Series(f"lightgbm_{h}", boosted))
        on_val = on_val.with_columns(pl.Series(f"lightgbm_{h}", boosted_val))
    if oracle.height:
        cols = [pl.col(f"expected_return_{h}").alias(f"oracle_{h}") for h in horizons]
        out = out.join(oracle.select("Date", "Code", *cols), on=["Date", "Code"], how="left", maintain_order="left")
    return out, info, on_val if validation is not None else None
