"""Where the model's linear paths start: the linear skip (phase 0) at a ridge fit on the training
split, the horizons phase 1 turns on at the best on validation of a few fits and one-feature
signals (``horizon_starts: validated``), at the better of the ridge and the ridge on ranked targets
(``ranked``), at the 1-day row (``one_day``) or at the ridge's infinite-penalty limit
(``covariance``), and the neighbour skip (phase 2) at ridge fits beside or
on the model's forecast, chosen horizon by horizon on validation. Each candidate is scored from one
validation forecast plus its linear term, which is the model's own forecast with that start.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from atft_kedro.evaluation.metrics import overlap_lag, paired_difference
from atft_kedro.features.targets import HORIZONS
from atft_kedro.graph.store import GraphSet
from atft_kedro.model import ATFTGATFAN
from atft_kedro.threads import torch_threads
from atft_kedro.training.data import HORIZON_KEYS, Batch, DateDataset, TrainingArrays, collate_dates
from atft_kedro.training.predict import mean_rank_ics


log = logging.getLogger(__name__)


def training_rows(arrays: TrainingArrays, train_idx: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(last-day features [rows, F], targets less each date's mean, in the model's units [rows, 4])
    of the training dates' stocks, date by date, each date's stocks in Code order (DateDataset's)."""
    train_idx = np.asarray(train_idx)
    x, bounds = last_day_rows(arrays, train_idx)
    y = np.empty((len(x), len(HORIZONS)))
    for t, start, stop in zip(train_idx, bounds[:-1], bounds[1:]):
        y[start:stop] = date_targets(arrays, t, scale)[1]
    return x, y


def last_day_rows(arrays: TrainingArrays, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The features of dates ``idx``' stocks on the date itself ([rows, F], float64), date by
    date, each date's stocks in Code order (DateDataset's: the rows of ``predict``'s frame), filled
    into one array (not a list and its stack), and where each date's rows begin and end."""
    idx = np.asarray(idx)
    bounds = np.concatenate([[0], np.cumsum(arrays.present[idx].sum(1))])
    x = np.empty((bounds[-1], arrays.features.shape[2]))
    for t, start, stop in zip(idx, bounds[:-1], bounds[1:]):
        x[start:stop] = arrays.features[t, np.flatnonzero(arrays.present[t])]
    return x, bounds


def date_targets(arrays: TrainingArrays, t: int, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Date ``t``'s stocks (their columns in ``arrays``, Code order) and their targets less the
    date's mean, in the model's units ([n, 4], float64): ``training_rows``' rows of that date."""
    members = np.flatnonzero(arrays.present[t])
    target = np.asarray(arrays.targets[t, members], dtype=np.float64)  # (n, 4)
    return members, (target - np.nanmean(target, axis=0)) / scale


def ranked_by_date(y: np.ndarray, sizes) -> np.ndarray:
    """``training_rows``' targets (``sizes``: each date's rows, in order) as the normal scores of
    their ranks among the date's finite ones, ties at their mean rank, NaN where the target is: a
    few extreme returns of a date no longer set a fit's slope."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    out = np.full_like(y, np.nan)
    for rows in np.split(np.arange(len(y)), np.cumsum(sizes)[:-1]):
        block = y[rows]
        finite = np.isfinite(block)
        ranks = rankdata(block, axis=0, nan_policy="omit")
        out[rows] = np.where(finite, ndtri((ranks - 0.5) / finite.sum(0).clip(1)), np.nan)
    return out


def ranked_targets(arrays: TrainingArrays, train_idx: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``training_rows(arrays, train_idx, ...)``'s targets ``y`` ranked within each of its dates
    (``ranked_by_date``; the ranks are the same before the date's mean and the scale come off)."""
    return ranked_by_date(y, arrays.present[np.asarray(train_idx)].sum(1))


def set_to_ridge(linear: torch.nn.Linear, horizons, x: np.ndarray, y: np.ndarray, alpha: float, only=None, clip: float = math.inf,
                 zeroed: int = 0) -> None:  # fmt: skip
    """Each output of ``linear`` (one per horizon of ``horizons``; with ``only``, of those among
    it) to the ridge fit of that horizon's column of ``y`` on ``x`` winsorised at ``clip``, its
    first ``zeroed`` columns read as 0 (rows with a finite target; each fit's design the one copy
    of ``x`` it makes: ``with_intercept``)."""
    from atft_kedro.evaluation.baselines import solve_ridge_design, with_intercept

    with torch.no_grad():
        for i, h in enumerate(horizons):
            if only is not None and h not in only:
                continue
            col = HORIZONS.index(h)
            ok = np.isfinite(y[:, col])
            coef = solve_ridge_design(with_intercept(x, ok, clip, zeroed=zeroed), y[ok, col], alpha)
            linear.weight[i] = torch.as_tensor(coef[:-1], dtype=linear.weight.dtype)
            linear.bias[i] = float(coef[-1])


def skip_clip_of(model: ATFTGATFAN, horizon: int) -> float:
    """The clip at which the linear skip's row of ``horizon`` reads the features (inf: as they are)."""
    return float(model.skip_clip[model.skip_horizons.index(horizon)])


def own_inputs(model: ATFTGATFAN, x: np.ndarray, horizon: int, out: np.ndarray | None = None) -> np.ndarray:
    """What the linear skip's row of ``horizon`` reads of last-day features ``x``: them winsorised
    at that row's ``skip_clip`` (``out=x``: in place)."""
    c = skip_clip_of(model, horizon)
    return np.clip(x, -c, c, out=out)


def last_day_features(validation: Validation, n_features: int) -> np.ndarray:
    """The last day's features of the validation rows, in the order of ``predict``'s frame ([rows, F], float64)."""
    dataset = validation.dataset
    return last_day_rows(dataset.arrays, dataset.date_indices)[0] if len(dataset) else np.zeros((0, n_features))


UNCLIPPED = "the ridge on the features as they are"


@torch.no_grad()
def start_at_ridge(model: ATFTGATFAN, arrays: TrainingArrays, train_idx: np.ndarray, alpha: float, clips=(),
                   validation: Validation | None = None, targets=("raw",), long_alpha: float | None = None) -> StartChoice | None:  # fmt: skip
    """The linear skip set to the ridge regression of each of its horizons' targets (less each
    date's mean, in the model's units) on the last day's features of the training dates, as each
    row reads them (``own_inputs``). With ``clips`` and a ``validation`` split, the rows of the
    model's horizons (the phase's: 1 day at phase 0) are fitted on the features as they are and
    winsorised at each of ``clips``, each fit scored there, and they keep the fit whose RankIC is
    best over those horizons, with its clip (``skip_clip``); the other rows keep the fit as they
    are, their own horizons unscored. A robust z-score's far values set a linear fit's ranking
    where the target follows them no further (stocknet's validation prefers a clip in each of its
    three folds, the default synthetic market's none; docs/what_training_has_shown.md, the seventh
    session). With ``targets`` ``("raw", "rank")`` each of those fits is also made on each date's
    targets as ranks (``ranked_by_date``), and validation picks among all of them. The rows of
    the horizons the phase does not train (5-20 days at phase 0) are fitted at ``long_alpha``
    (None: ``alpha``). Every fit is solved from products summed date by date (``skip_moments``),
    so the training rows are never held together (at the full size 2.6 million rows of 91
    features, 1.9 GB a float64 copy; docs/performance.md, "The linear skip's start").
    -> the candidates, their scores and what was kept (None without a choice)."""
    linear, horizons = model.linear, model.skip_horizons
    scored = [h for h in model.horizons if h in horizons]
    long_alpha = alpha if long_alpha is None else long_alpha
    scale = model.target_scale.cpu().numpy()
    if not clips or validation is None:  # each row reads the features at its own clip (own_inputs)
        moments = skip_moments(arrays, train_idx, scale, {(skip_clip_of(model, h), h) for h in horizons})
        for i, h in enumerate(horizons):
            _set_row(linear, i, moments[skip_clip_of(model, h), h], alpha if h in scored else long_alpha)
        return None
    ranked = "rank" in targets
    tried = (math.inf, *sorted(set(clips)))
    moments = skip_moments(arrays, train_idx, scale, {(math.inf, h) for h in horizons} | {(c, h) for c in tried for h in scored}, ranked)
    model.skip_clip.fill_(math.inf)
    for i, h in enumerate(horizons):
        if h not in scored:  # the rows not chosen here: as they are
            _set_row(linear, i, moments[math.inf, h], long_alpha)
    starts, clip_of = {}, {}
    for kind in ("raw", "rank") if ranked else ("raw",):
        for c in tried:
            name = UNCLIPPED if c == math.inf else f"the ridge on the features winsorised at {c:g}"
            name += "" if kind == "raw" else ", fitted on each date's targets as ranks"
            for i, h in enumerate(horizons):
                if h in scored:
                    _set_row(linear, i, moments[c, h], alpha, ranks=kind == "rank")
            starts[name], clip_of[name] = copy.deepcopy(linear.state_dict()), c
    linear.weight.zero_()
    linear.bias.zero_()
    rows = last_day_features(validation, linear.in_features)
    with torch.random.fork_rng(devices=[]):  # a forecast's loader draws a seed from torch's generator: the phase's training draws stay as without the choice
        scores = scores_of_terms(model, validation, rows, starts, horizons, clips=clip_of)
    keys = [f"{h}d" for h in scored]
    mean = lambda name: float(np.nanmean([scores[name].get(k, math.nan) for k in keys]))  # noqa: E731
    best = max(starts, key=lambda n: (mean(n), n == UNCLIPPED))
    linear.load_state_dict(starts[best])
    for h in scored:
        model.skip_clip[horizons.index(h)] = clip_of[best]
    log.info("linear skip's start at %s, validation RankIC: %s; kept %s", ", ".join(keys), ", ".join(f"{n} {mean(n):.4f}" for n in starts), best)
    return StartChoice(starts, scores, {k: best for k in keys})


def skip_moments(arrays: TrainingArrays, train_idx: np.ndarray, scale: np.ndarray, wanted, ranked: bool = False) -> dict:
    """For each (clip, horizon) of ``wanted``: Z'Z over the training rows (``training_rows``')
    whose h-day target is finite, Z = [the last day's features winsorised at the clip (inf: as
    they are), 1, the h-day target, and with ``ranked`` its date's rank score (``ranked_by_date``)],
    float64 on one torch thread, summed date by date: a linear skip's ridge fits are solved from
    them (``_set_row``) without the rows held together."""
    out = {}
    for t in np.asarray(train_idx):
        members, y = date_targets(arrays, t, scale)
        x = np.asarray(arrays.features[t, members], dtype=np.float64)
        ranks = ranked_by_date(y, [len(y)]) if ranked else None
        for clip in sorted({c for c, _ in wanted}):
            read = x if clip == math.inf else np.clip(x, -clip, clip)
            for h in sorted(h for c, h in wanted if c == clip):
                col = HORIZONS.index(h)
                ok = np.isfinite(y[:, col])
                date = gram_of([read[ok], np.ones((int(ok.sum()), 1)), y[ok, col : col + 1]] + ([ranks[ok, col : col + 1]] if ranked else []))
                out[clip, h] = date if (clip, h) not in out else out[clip, h].add_(date)
    if not out:
        raise ValueError("the linear skip's start has no training dates to fit on")
    return out


def _set_row(linear: torch.nn.Linear, i: int, moments: torch.Tensor, alpha: float, ranks: bool = False) -> None:
    """Row ``i`` of ``linear`` set to the ridge fit (penalty ``alpha``, the intercept unpenalised)
    of the target, or with ``ranks`` its rank score, on the features, from their ``skip_moments``:
    the fit ``set_to_ridge`` makes from the stacked rows."""
    from atft_kedro.evaluation.baselines import solve_ridge_gram

    n = linear.in_features + 1  # the features and the intercept's 1
    coef = solve_ridge_gram(moments[:n, :n].clone(), moments[:n, n + int(ranks)].clone(), alpha)
    linear.weight[i] = torch.as_tensor(coef[:-1], dtype=linear.weight.dtype)
    linear.bias[i] = float(coef[-1])


@torch.no_grad()
def start_neighbours_at_ridge(model: ATFTGATFAN, arrays: TrainingArrays, graphs: GraphSet, train_idx: np.ndarray, window: int, alpha: float,
                               validation: Validation | None = None, margin: float = 0.0) -> StartChoice | None:  # fmt: skip
    """The neighbour skip (its attention still uniform, its map 0) set from ridge fits over the
    training dates of each horizon's target on the neighbours' inputs: beside the model's median
    forecast (dropout off, in its units; ``set_beside_forecast``), or on what that forecast leaves.
    With ``validation`` both are tried, each also on the lead-weighted sum alone (when the skip
    has one: the neighbour mean's many columns can dilute a ridge more than they add), and no skip
    at all (the map left at 0), and each horizon keeps its best (a horizon's output reads only its
    own row of the map, so the choices are independent): the fit beside the forecast is the better
    one where the neighbours carry much (the default market: validation 0.062 against 0.044 at 1
    day), the fit of what it leaves where they carry little and the forecast's own scale is right,
    and where none beats the previous phase's function the graph path starts at nothing
    (docs/what_training_has_shown.md, 2026-12-02); with ``margin`` > 0, also where the best beats
    it by no more than ``margin`` standard errors (``kept_starts``).
    The candidates are scored from one validation forecast with the map at 0 and the skip's
    inputs: the skip adds ``linear(inputs) * target_scale`` to every quantile, so each candidate's
    forecast is that sum (the model's own forecast up to float rounding), one pass over the
    validation dates instead of one per candidate. -> the candidates, their scores and what each
    horizon kept (None without ``validation``)."""
    linear, moments = model.neighbour.linear, neighbour_moments(model, arrays, graphs, train_idx, window)
    if validation is None:
        set_beside_forecast(linear, model.neighbour_horizons, moments, alpha)
        return None
    none = "none (the previous phase's function)"
    starts = {none: copy.deepcopy(linear.state_dict())}  # the map is still 0
    designs = {"": 0}  # the columns read as 0
    if model.neighbour.lead_attribute is not None:  # the mean's columns at 0 get coefficients 0: the lead-weighted sum alone
        designs[", lead-weighted sum alone"] = model.cfg.n_features
    for suffix, zeroed in designs.items():
        set_beside_forecast(linear, model.neighbour_horizons, moments, alpha, zeroed=zeroed)
        starts[f"the fit beside the forecast{suffix}"] = copy.deepcopy(linear.state_dict())
        set_on_what_forecast_leaves(linear, model.neighbour_horizons, moments, alpha, zeroed=zeroed)
        starts[f"the fit of what the forecast leaves{suffix}"] = copy.deepcopy(linear.state_dict())
    linear.load_state_dict(starts[none])
    scores = scored_starts(model, starts, validation)
    kept = kept_starts(scores, [f"{h}d" for h in model.neighbour_horizons], none, margin)
    _keep_rows(linear, model.neighbour_horizons, StartChoice(starts, scores, kept), "neighbour skip")
    return StartChoice(starts, scores, kept)


@dataclass(frozen=True)
class Validation:
    """The validation split as a phase sees it: its ``dataset``, ``forecast`` (a model -> its
    predictions there, ``predict``'s frame) and ``by_date`` (such a frame -> per horizon, its
    dates' RankIC, ``DailyScores``, for paired comparisons); ``rank_ics`` is their mean."""

    dataset: DateDataset
    forecast: Callable[[ATFTGATFAN], pl.DataFrame]
    by_date: Callable[[pl.DataFrame], dict]

    def rank_ics(self, frame: pl.DataFrame) -> dict:
        """Such a frame -> RankIC per horizon, the mean over its dates (the evaluation's metric)."""
        return mean_rank_ics(self.by_date(frame))


@dataclass(frozen=True)
class StartChoice:
    """A linear path's candidate starts (name -> the map's state), their validation RankIC per
    horizon, and the candidate each horizon kept."""

    starts: dict
    scores: dict
    kept: dict


@torch.no_grad()
def neighbour_moments(model: ATFTGATFAN, arrays: TrainingArrays, graphs: GraphSet, train_idx: np.ndarray, window: int) -> dict:
    """Per horizon of the neighbour skip, ``design_moments`` of the training rows (``training_rows``'
    targets) on the skip's inputs and the model's median forecast (dropout off, in its units),
    summed date by date: every fit of the skip's start is made from them (``ridge_of_moments``),
    so its rows are never held together (at the full size 2.6 million rows of 101 inputs, 2.1 GB
    a copy, of which the fits on the stacked rows held three: docs/performance.md)."""
    scale, moments = model.target_scale.cpu().numpy(), None
    model.eval()
    for t, (b, x_date) in zip(np.asarray(train_idx), neighbour_inputs(model, DateDataset(arrays, graphs, train_idx, window))):
        members, y = date_targets(arrays, t, scale)
        if len(members) != len(x_date):
            raise RuntimeError(f"the neighbour inputs of {arrays.dates[t]} have {len(x_date)} rows, its training rows {len(members)}")
        out = model(b.x, b.market, b.date_of_node, b.neighbors, b.edge_attr)
        forecast = np.stack([(out[h][:, 2] / s).double().cpu().numpy() if h in out else np.zeros(len(b.x))
                             for h, s in zip(HORIZON_KEYS, model.target_scale)], 1)  # fmt: skip
        date = design_moments(x_date, y, forecast, model.neighbour_horizons)
        moments = date if moments is None else {h: moments[h].add_(date[h]) for h in date}
    if moments is None:
        raise ValueError("the neighbour skip's start has no training dates to fit on")
    return moments


def design_moments(x: np.ndarray, y: np.ndarray, forecast: np.ndarray, horizons) -> dict:
    """Per horizon h of ``horizons``: Z'Z over the rows whose h-day target is finite, Z = [x, the
    forecast's h-day column, 1, the h-day target] (``y`` and ``forecast``: one column per horizon
    of HORIZONS), float64 on one torch thread (the same bits on any core count). Sums over rows:
    the moments of many dates are the sum of each date's."""
    out = {}
    for h in horizons:
        col = HORIZONS.index(h)
        ok = np.isfinite(y[:, col])
        out[h] = gram_of([x[ok], forecast[ok, col : col + 1], np.ones((int(ok.sum()), 1)), y[ok, col : col + 1]])
    return out


def gram_of(columns: list[np.ndarray]) -> torch.Tensor:
    """Z'Z of Z = ``columns`` side by side (float64), on one torch thread: the same bits on any
    core count. A ridge fit's products over many dates are the sum of each date's."""
    z = torch.from_numpy(np.hstack(columns))
    with torch_threads(1):
        return z.T @ z


def ridge_of_moments(moments: torch.Tensor, alpha: float, beside: bool, zeroed: int = 0) -> np.ndarray:
    """From one horizon's ``design_moments``: the ridge coefficients (the intercept last,
    unpenalised) of the target on [x, forecast, 1] (``beside``) or of the target less the forecast
    on [x, 1], x's first ``zeroed`` columns read as 0: the fits ``with_intercept``'s designs give."""
    from atft_kedro.evaluation.baselines import solve_ridge_gram

    n = moments.shape[0] - 3  # x's columns; then the forecast, the intercept's 1 and the target
    cols = [*range(n), n, n + 1] if beside else [*range(n), n + 1]
    gram = moments[cols][:, cols].clone()
    moment = moments[cols, n + 2] - (0.0 if beside else moments[cols, n])
    gram[:zeroed], gram[:, :zeroed], moment[:zeroed] = 0.0, 0.0, 0.0
    return solve_ridge_gram(gram, moment, alpha)


def neighbour_inputs(model: ATFTGATFAN, dataset: DateDataset) -> Iterator[tuple[Batch, np.ndarray]]:
    """Date by date of ``dataset``, in its order: the date's batch and the neighbour skip's inputs
    there ([stocks, in_features], float64)."""
    for item in dataset:
        b = collate_dates([item]).to(model.target_scale.device)
        yield b, model.neighbour.inputs(b.x[:, -1], b.neighbors, b.edge_attr).double().cpu().numpy()


def scored_starts(model: ATFTGATFAN, starts: dict, validation: Validation) -> dict:
    """Each candidate map's validation RankIC per horizon, from one forecast of ``model`` (its map
    at 0) plus the candidate's term, linear(inputs) times the horizon's target scale."""
    inputs = [x_date for _, x_date in neighbour_inputs(model, validation.dataset)]  # the rows of ``predict``'s frame, in order
    inputs = np.vstack(inputs) if inputs else np.zeros((0, model.neighbour.linear.in_features))
    return scores_of_terms(model, validation, inputs, starts, model.neighbour_horizons)


def scores_of_terms(model: ATFTGATFAN, validation: Validation, inputs: np.ndarray, starts: dict, horizons, held: dict | None = None,
                    clips: dict | None = None) -> dict:  # fmt: skip
    """Each candidate linear map's (name -> state, one output per horizon of ``horizons``)
    validation RankIC per horizon: ``model``'s forecast there, less the term of the map ``held``
    (the state it holds now; None: a map at 0), plus the candidate's term, linear(inputs) times the
    horizon's target scale. ``inputs``: the map's inputs on the rows of ``predict``'s frame;
    ``clips`` (name -> a clip, with ``held`` None): each candidate reads them winsorised at its
    own, a block of rows at a time (no clipped copy of them). Each candidate's scores also hold,
    under ``BY_DATE``, its RankIC date by date."""
    if held is not None and clips is not None:
        raise ValueError("candidates with clips of their own are scored against a map at 0 (held=None)")
    base = validation.forecast(model)
    if len(inputs) != len(base):
        raise RuntimeError(f"the linear map's inputs have {len(inputs)} rows, the validation forecast {len(base)}")
    scale = dict(zip(HORIZON_KEYS, model.target_scale.double().cpu().numpy()))
    now = _term(held, inputs) if held is not None else 0.0
    scores = {}
    for name, weights in starts.items():
        change = _term(weights, inputs, math.inf if clips is None else clips[name]) - now
        frame = base.with_columns(pl.Series(f"pred_{h}d", base[f"pred_{h}d"].to_numpy() + change[:, i] * scale[f"{h}d"])
                                  for i, h in enumerate(horizons) if f"pred_{h}d" in base.columns)  # fmt: skip
        daily = validation.by_date(frame)
        scores[name] = {**mean_rank_ics(daily), BY_DATE: daily}
    return scores


_TERM_ROWS = 1 << 14  # a winsorised term's rows a block (13 MB of 101 features)


def _term(weights: dict, x: np.ndarray, clip: float = math.inf) -> np.ndarray:
    """A linear map's term (rows, outputs) in float64, the map's state ``weights`` on ``x``
    winsorised at ``clip``, a block of rows at a time when clipped."""
    w, b = weights["weight"].double().numpy().T, weights["bias"].double().numpy()
    if clip == math.inf:
        return x @ w + b
    out = np.empty((len(x), w.shape[1]))
    for start in range(0, len(x), _TERM_ROWS):
        out[start : start + _TERM_ROWS] = np.clip(x[start : start + _TERM_ROWS], -clip, clip) @ w + b
    return out


@torch.no_grad()
def start_at_one_day(model: ATFTGATFAN, horizons) -> None:
    """The linear skip's rows of ``horizons`` (those a phase turns on) set to its 1-day row as it
    stands (``horizon_starts: one_day``): a long horizon starts as the 1-day path, in its own units
    (the same ranking). On validation over 11 markets the 1-day ridge ranks 5 / 10 / 20-day
    returns better than each horizon's own ridge (+0.006 / +0.011 / +0.019; a next day's expected
    return is part of every longer one, and the 1-day fit sees the most independent outcomes;
    docs/what_training_has_shown.md, 2026-12-03, later)."""
    linear, rows = model.linear, list(model.skip_horizons)
    one = rows.index(1)
    for h in horizons:
        linear.weight[rows.index(h)] = linear.weight[one]
        linear.bias[rows.index(h)] = linear.bias[one]
        model.skip_clip[rows.index(h)] = model.skip_clip[one]  # the row reads the features as the 1-day row does
    log.info("linear skip: the rows of %s start at the 1-day row", ", ".join(f"{h}d" for h in horizons))


@torch.no_grad()
def start_at_covariance(model: ATFTGATFAN, arrays: TrainingArrays, train_idx: np.ndarray, horizons) -> None:
    """The linear skip's rows of ``horizons`` (those a phase turns on) set to the ridge's limit as
    its penalty grows (``horizon_starts: covariance``, an option): each feature weighted by its
    covariance with the horizon's target over the training rows (read at the row's clip), the whole
    scaled by least squares. With ~300 overlapping training dates a 5-20 day target holds 15-60
    independent periods, few to estimate how 91 correlated features share a signal: on each of the
    default market's five draws the ridge's validation RankIC at 20 days is higher at this limit
    than at penalty 1000. Measured with the model it lifted the synthetic draws' long horizons a
    little and lost stocknet's 5 days (docs/what_training_has_shown.md, the twenty-sixth session).
    The products run on one torch thread (``covariance_weights``): the same bits on any core count."""
    from atft_kedro.evaluation.baselines import covariance_weights

    x, y = training_rows(arrays, train_idx, model.target_scale.cpu().numpy())
    linear, rows = model.linear, list(model.skip_horizons)
    for h in horizons:
        col, i = HORIZONS.index(h), rows.index(h)
        ok = np.isfinite(y[:, col])
        xh, target = own_inputs(model, x[ok], h), y[ok, col]
        _set_row_scaled(linear, i, xh, target, covariance_weights(xh, target))
    log.info("linear skip: the rows of %s start at the covariance fit (the ridge's infinite-penalty limit, scaled)",
             ", ".join(f"{h}d" for h in horizons))  # fmt: skip


def _set_row_scaled(linear: torch.nn.Linear, i: int, x: np.ndarray, target: np.ndarray, w: np.ndarray) -> float:
    """Row ``i`` of ``linear`` set to the direction ``w`` on inputs ``x``, centred on those rows and
    scaled by least squares on ``target`` (a residual with no part along the term). On one torch
    thread, as ``covariance_weights``: the same bits on any core count. -> the scale."""
    with torch_threads(1):
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        offset = float(xt.mean(dim=0) @ wt)
        term = xt @ wt - offset  # the centred inputs' term, without a centred copy of them
        scale = float(term @ torch.from_numpy(np.ascontiguousarray(target))) / max(float(term @ term), 1e-300)
    linear.weight[i] = torch.as_tensor(scale * w, dtype=linear.weight.dtype)
    linear.bias[i] = -scale * offset
    return scale


@torch.no_grad()
def start_at_feature(model: ATFTGATFAN, arrays: TrainingArrays, train_idx: np.ndarray, horizons, feature: str) -> None:
    """The linear skip's rows of ``horizons`` (those a phase turns on) set to one feature, scaled by
    least squares on the training rows (``horizon_starts: momentum``, ``momentum_feature``, an
    option): the row ranks as the feature does, or against it where the training rows say its
    slope is negative. A fixed prior has no weights to estimate from the 15-60 independent periods
    a 5-20 day target holds over ~300 training dates; on validation the last 60 days' return ranks
    the previous synthetic market's 5-20 day returns better than any ridge fitted on the features,
    and the default market's a little below the best of them (the ridge at 10^8, by 0.0005-0.005). Measured
    with the model it gained on validation and not on test, and lost stocknet's 5 days
    (docs/what_training_has_shown.md, the twenty-seventh session)."""
    if feature not in arrays.feature_names:
        raise ValueError(f"training.momentum_feature is {feature!r}, which is not among the model's features "
                         f"({', '.join(arrays.feature_names)}): name one of them")  # fmt: skip
    one = np.zeros(len(arrays.feature_names))
    one[arrays.feature_names.index(feature)] = 1.0
    x, y = training_rows(arrays, train_idx, model.target_scale.cpu().numpy())
    linear, rows = model.linear, list(model.skip_horizons)
    for h in horizons:
        col, i = HORIZONS.index(h), rows.index(h)
        ok = np.isfinite(y[:, col])
        scale = _set_row_scaled(linear, i, own_inputs(model, x[ok], h), y[ok, col], one)
        log.info("linear skip: the %sd row starts at %s times %.4g (least squares on the training rows)", h, feature, scale)


BY_DATE = "by date"  # a candidate's scores: its per-horizon DailyScores, beside the means


START_PENALTIES = (0.01, 0.1, 10.0, 100.0)  # the other ridge penalties a horizon's start is tried at, times linear_ridge_alpha


@torch.no_grad()
def choose_skip_starts(model: ATFTGATFAN, arrays: TrainingArrays, train_idx: np.ndarray, alpha: float, horizons,
                        validation: Validation, candidates: str = "validated") -> StartChoice:  # fmt: skip
    """The linear skip's rows of ``horizons`` (those a phase turns on) chosen on validation, each
    on its own. ``candidates`` "validated": the ridge start they hold (penalty ``alpha``), the ridge
    at the penalties around it (``START_PENALTIES``, the ridge baseline's range until the
    twenty-sixth session; ``horizon_starts: covariance`` starts at the limit past it), or one of the
    one-feature baselines (``SIGNALS``: 20-day momentum, 1-day reversal) alone, its sign as the
    baseline's, scaled to the spread of the ridge start's term on the training rows. A ridge fitted
    on the training split carries what that split shows; where a long horizon's signal differs
    between the training split and the dates after it (20-day momentum on the previous market:
    RankIC +0.018 on training, +0.067 on validation), validation can choose the one that carries
    (docs/what_training_has_shown.md, 2026-12-03). ``candidates`` "ranked": the ridge start or the
    same ridge fitted on each date's targets as ranks (``ranked_by_date``): a few extreme h-day
    returns no longer set the fit's slope (docs/what_training_has_shown.md, the tenth session).
    -> the candidates, their scores and what each horizon kept; the rows are set to it."""
    from atft_kedro.evaluation.baselines import SIGNALS

    if candidates not in ("validated", "ranked"):
        raise ValueError(f"the linear skip's long-horizon candidates are 'validated' or 'ranked', got {candidates!r}")
    linear = model.linear
    x, y = training_rows(arrays, train_idx, model.target_scale.cpu().numpy())
    if len({skip_clip_of(model, h) for h in horizons}) > 1:
        raise ValueError(f"the linear skip's rows of {list(horizons)} read the features at different clips; their starts are chosen on one design")
    own_inputs(model, x, horizons[0], out=x)  # in place: x is this call's own
    held = "the ridge start"
    starts = {held: copy.deepcopy(linear.state_dict())}
    if candidates == "ranked":
        set_to_ridge(linear, model.skip_horizons, x, ranked_targets(arrays, train_idx, y), alpha)
        starts["the ridge fitted on each date's targets as ranks"] = copy.deepcopy(linear.state_dict())
    else:
        for k in START_PENALTIES:
            set_to_ridge(linear, model.skip_horizons, x, y, alpha * k)
            starts[f"the ridge at penalty {alpha * k:g}"] = copy.deepcopy(linear.state_dict())
        spread = np.std(x @ starts[held]["weight"].double().numpy().T, axis=0)  # (skip horizons,) the ridge start's term on the training rows
        for name, (feature, sign) in SIGNALS.items():
            if feature not in arrays.feature_names:
                continue
            j = arrays.feature_names.index(feature)
            weight = torch.zeros_like(linear.weight)
            weight[:, j] = torch.as_tensor(sign * spread / max(float(np.std(x[:, j])), 1e-12), dtype=weight.dtype)
            starts[f"{name} alone"] = {"weight": weight, "bias": torch.zeros_like(linear.bias)}
    linear.load_state_dict(starts[held])
    inputs = own_inputs(model, last_day_features(validation, linear.in_features), horizons[0])
    with torch.random.fork_rng(devices=[]):  # a forecast's loader draws a seed from torch's generator: the phase's training draws stay as without the choice
        scores = scores_of_terms(model, validation, inputs, starts, model.skip_horizons, held=starts[held])
    choice = StartChoice(starts, scores, kept_starts(scores, [f"{h}d" for h in horizons], held))
    _keep_rows(linear, model.skip_horizons, choice, "linear skip")
    return choice


def _keep_rows(linear: torch.nn.Linear, horizons, choice: StartChoice, path: str) -> None:
    """Each row of ``linear`` (one per horizon of ``horizons``) whose horizon ``choice`` kept a
    candidate for, set to that candidate's row, and the choice logged with every candidate's score."""
    for i, h in enumerate(horizons):
        key = f"{h}d"
        if key not in choice.kept:
            continue
        name = choice.kept[key]
        linear.weight[i] = choice.starts[name]["weight"][i]
        linear.bias[i] = choice.starts[name]["bias"][i]
        log.info("%s's start at %s, validation RankIC: %s; kept %s", path, key,
                 ", ".join(f"{n} {s.get(key, math.nan):.4f}" for n, s in choice.scores.items()), name)  # fmt: skip


def kept_starts(scores: dict, horizons: list[str], none: str, margin: float = 0.0) -> dict:
    """horizon -> the candidate with the best validation RankIC there (NaN, no valid date: the
    worst; ties: a fit over ``none``, then the first). With ``margin`` > 0 the best replaces
    ``none`` only where it beats it by more than ``margin`` standard errors of the paired per-date
    difference (Newey-West at lag h - 1; the candidates' ``BY_DATE`` scores): the best of several
    fits on one validation split is partly its luck there, the one-standard-error rule of model
    selection."""
    kept = {}
    for key in horizons:
        rank = {n: s.get(key, math.nan) for n, s in scores.items()}
        rank = {n: v if math.isfinite(v) else -math.inf for n, v in rank.items()}
        best = max(scores, key=lambda name: (rank[name], name != none))
        if margin > 0 and best != none and none in scores:
            if BY_DATE not in scores[best]:
                raise ValueError(f"a start margin of {margin:g} standard errors needs each candidate's RankIC date by date "
                                 "(under BY_DATE), and the scores hold only the means")  # fmt: skip
            diff = paired_difference(scores[best][BY_DATE][key], scores[none][BY_DATE][key], overlap_lag(key))
            if not diff["mean"] > margin * diff["se"]:  # NaN (too few dates): not shown to be better
                log.info("%s: %s beats %s by %+.4f, within %g standard errors (%.4f): kept %s",
                         key, best, none, diff["mean"], margin, diff["se"], none)  # fmt: skip
                best = none
        kept[key] = best
    return kept


def set_beside_forecast(linear: torch.nn.Linear, horizons, moments: dict, alpha: float, zeroed: int = 0) -> None:
    """Each output of ``linear`` (one per horizon) set so that ``forecast + linear(x)`` ranks as the
    ridge fit of the target on x and the forecast together does: that fit is c * forecast + x b +
    b0, and with c > 0, forecast + (x b + b0) / c has the same ranking on every date. (A fit of what
    the forecast leaves, target - forecast, takes the forecast's scale as right: a forecast trained
    on rank losses has its own scale, and then its residual is mostly that forecast.) Where c <= 0
    (the forecast does not rank the training targets), the fit of what the forecast leaves.
    ``moments``: per horizon, ``design_moments`` of x, the targets and the forecast; x's first
    ``zeroed`` columns are read as 0."""
    with torch.no_grad():
        for i, h in enumerate(horizons):
            coef = ridge_of_moments(moments[h], alpha, beside=True, zeroed=zeroed)
            c = coef[-2]
            if c <= 0:
                coef, c = ridge_of_moments(moments[h], alpha, beside=False, zeroed=zeroed), 1.0
            else:
                coef = np.append(coef[:-2], coef[-1])
            linear.weight[i] = torch.as_tensor(coef[:-1] / c, dtype=linear.weight.dtype)
            linear.bias[i] = float(coef[-1] / c)


def set_on_what_forecast_leaves(linear: torch.nn.Linear, horizons, moments: dict, alpha: float, zeroed: int = 0) -> None:
    """Each output of ``linear`` (one per horizon) to the ridge fit of the target less the forecast
    on x (``moments`` as ``set_beside_forecast`` reads them; x's first ``zeroed`` columns read as 0)."""
    with torch.no_grad():
        for i, h in enumerate(horizons):
            coef = ridge_of_moments(moments[h], alpha, beside=False, zeroed=zeroed)
            linear.weight[i] = torch.as_tensor(coef[:-1], dtype=linear.weight.dtype)
            linear.bias[i] = float(coef[-1])
