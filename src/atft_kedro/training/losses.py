"""Cross-sectional losses (SPEC section 5), computed per date and averaged over valid dates.

A date counts when it has at least ``min_stocks`` finite targets; NaN targets and dates with too
few stocks are masked out, never averaged in as zeros. The dates of a batch are laid out as one
padded [D, n_max] grid (``DateLayout``), so each statistic is one batched operation over all dates.

Differentiable rank-IC: soft ranks by pairwise sigmoids, r_i = 1/2 + sum_{j != i} sigmoid((p_i - p_j)/tau),
then the Pearson correlation of the soft ranks with the targets' ordinary ranks (Spearman's rho
with one side smoothed). Why this construction: it is exact as tau -> 0, has a gradient everywhere,
needs no extra dependency (sorting-network or optimal-transport soft sorts would), and the O(N^2)
pairwise matrix of one date's cross-section (3,800^2 floats ~ 58 MB) is affordable. ``tau`` is set
relative to the spread of the day's predictions so the smoothing does not depend on their scale.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from atft_kedro.model.heads import QUANTILES


@dataclass(frozen=True)
class LossWeights:
    pinball: float = 1.0
    rank_ic: float = 0.5
    ic: float = 0.3
    sharpe: float = 0.1


@functools.lru_cache(maxsize=None)
def _levels(levels: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The quantile levels as a tensor, made once per dtype and device: a step captured in a CUDA
    graph cannot copy from the host (and an eager one need not)."""
    return torch.tensor(levels, dtype=dtype, device=device)


def _pinball_sum(quantiles: torch.Tensor, target: torch.Tensor, levels=QUANTILES) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed pinball loss over finite targets and levels, the number of terms): quantiles [N, Q], target [N]."""
    ok = torch.isfinite(target)[:, None]
    tau = _levels(tuple(levels), quantiles.dtype, quantiles.device)
    diff = torch.where(ok, target[:, None] - quantiles, 0.0)  # (N, Q), 0 where the target is unknown
    return torch.maximum(tau * diff, (tau - 1) * diff).sum(), ok.sum() * len(levels)


def pinball_loss(quantiles: torch.Tensor, target: torch.Tensor, levels=QUANTILES) -> torch.Tensor:
    """Mean pinball loss over finite targets: quantiles [N, Q], target [N]; 0 when none is finite."""
    total, count = _pinball_sum(quantiles, target, levels)
    return total / count.clamp_min(1)


@dataclass(frozen=True)
class DateLayout:
    """A batch's nodes laid out by date as a padded [D, n_max] grid, so every per-date statistic
    is one batched operation instead of a Python loop with a host synchronisation per date.
    ``mask`` marks real nodes with a finite target; ``valid`` the dates with at least min_stocks."""

    flat: torch.Tensor  # [N] position of each node in the flattened grid
    shape: tuple[int, int]  # (D, n_max)
    dates: torch.Tensor  # [D] date ids, ascending
    mask: torch.Tensor  # [D, n_max] bool
    valid: torch.Tensor  # [D] bool

    @classmethod
    def of(cls, date_of_node: torch.Tensor, counts: list[int] | None = None) -> "DateLayout":
        """The grid of a batch's dates, every real node counted (see ``masked``). ``counts``: the
        number of nodes of each date when the host knows them (a batch's dates are 0..D-1): the
        grid is then laid out without reading anything back from the device."""
        if counts is None:
            dates, date = torch.unique(date_of_node, return_inverse=True)
            n_max = int(torch.bincount(date, minlength=len(dates)).max()) if len(dates) else 0
        else:
            dates, date, n_max = torch.arange(len(counts), device=date_of_node.device), date_of_node, max(counts, default=0)
        order = torch.argsort(date, stable=True)
        by_date = date[order]
        first = torch.searchsorted(by_date, torch.arange(len(dates), device=date.device))  # where each date's nodes start (on the device)
        slot = torch.empty_like(date)
        slot[order] = torch.arange(len(date), device=date.device) - first[by_date]
        flat = date * n_max + slot
        mask = torch.zeros(len(dates) * n_max, dtype=torch.bool, device=date.device)
        mask[flat] = True
        mask = mask.view(len(dates), n_max)
        return cls(flat, (len(dates), n_max), dates, mask, mask.any(1))

    def masked(self, target: torch.Tensor, min_stocks: int) -> "DateLayout":
        """The same grid counting only nodes with a finite target, and dates with min_stocks of them."""
        mask = torch.zeros_like(self.mask).view(-1).index_put((self.flat,), torch.isfinite(target)).view(self.shape)
        return DateLayout(self.flat, self.shape, self.dates, mask, mask.sum(1) >= min_stocks)

    def grid(self, values: torch.Tensor) -> torch.Tensor:
        """[N] -> [D, n_max]: 0 at padding and wherever the target is unknown (never NaN)."""
        out = values.new_zeros(self.shape[0] * self.shape[1]).scatter(0, self.flat, values)
        return torch.where(self.mask, out.view(self.shape), 0.0)


def _pearson(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per row of [D, n]: the correlation of a and b over the masked entries."""
    m = mask.to(a.dtype)
    n = m.sum(-1, keepdim=True).clamp_min(1)
    a = (a - (a * m).sum(-1, keepdim=True) / n) * m
    b = (b - (b * m).sum(-1, keepdim=True) / n) * m
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + eps)


def _soft_rank(x: torch.Tensor, mask: torch.Tensor, tau: float) -> torch.Tensor:
    """Per row of [D, n]: pairwise-sigmoid soft ranks among the masked entries (1-based)."""
    m = mask.to(x.dtype)
    n = m.sum(-1, keepdim=True)
    mean = (x * m).sum(-1, keepdim=True) / n.clamp_min(1)
    std = (((x - mean) * m).square().sum(-1, keepdim=True) / (n - 1).clamp_min(1)).sqrt()  # unbiased, as Tensor.std
    scale = tau * std.detach().clamp_min(1e-8)
    diff = (x[..., :, None] - x[..., None, :]) / scale[..., None]  # (D, n, n)
    return 0.5 + (torch.sigmoid(diff) * m[..., None, :]).sum(-1)  # includes sigmoid(0) = 1/2 for j = i


def soft_rank(x: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Pairwise-sigmoid soft ranks of a 1-D tensor (1-based, as the ordinary ranks when tau -> 0)."""
    return _soft_rank(x[None], torch.ones_like(x, dtype=torch.bool)[None], tau)[0]


def _hard_rank(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row: ordinary ranks 1..n of the masked entries (the rest rank after them)."""
    y = torch.where(mask, y, torch.inf)
    return torch.argsort(torch.argsort(y, dim=-1, stable=True), dim=-1, stable=True).to(y.dtype) + 1


def _correlations(p: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, tau: float):
    """Per date of [D, n] grids: (IC, soft rank-IC), each [D]."""
    return _pearson(p, y, mask), _pearson(_soft_rank(p, mask, tau), _hard_rank(y, mask), mask)


def _long_short(p: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per date of [D, n] grids: the dollar-neutral, unit-gross long-short return, [D]."""
    m = mask.to(p.dtype)
    centred = (p - (p * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp_min(1)) * m
    return (centred / centred.abs().sum(-1, keepdim=True).clamp_min(1e-12) * y).sum(-1)


def per_date_correlations(
    pred: torch.Tensor, target: torch.Tensor, date_of_node: torch.Tensor, *, min_stocks: int = 20, tau: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (ic [D_valid], soft rank-ic [D_valid], valid date ids)."""
    layout = DateLayout.of(date_of_node).masked(target, min_stocks)
    ic, ric = _correlations(layout.grid(pred), layout.grid(target), layout.mask, tau)
    return ic[layout.valid], ric[layout.valid], layout.dates[layout.valid]


def long_short_returns(pred: torch.Tensor, target: torch.Tensor, date_of_node: torch.Tensor, min_stocks: int = 20) -> torch.Tensor:
    """Per valid date, the return of a dollar-neutral, unit-gross portfolio with weights
    proportional to the demeaned prediction: w_i = (p_i - mean p) / sum_j |p_j - mean p|."""
    layout = DateLayout.of(date_of_node).masked(target, min_stocks)
    return _long_short(layout.grid(pred), layout.grid(target), layout.mask)[layout.valid]


def _valid_mean(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of x over the valid dates; 0, with a zero gradient, when there is none."""
    return torch.where(valid, x, 0.0).sum() / valid.sum().clamp_min(1)


def _sharpe(ls: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """-mean/std of the valid dates' long-short returns; 0 (no gradient) with fewer than 2 dates."""
    n = valid.sum()
    mean = _valid_mean(ls, valid)
    var = torch.where(valid, ls - mean, 0.0).square().sum() / (n - 1).clamp_min(1)
    var = torch.where(n >= 2, var, 1.0)  # keeps the unused branch finite, so its zero gradient stays 0
    return torch.where(n >= 2, -mean / (var.sqrt() + 1e-8), 0.0)


def sharpe_loss(ls_returns: torch.Tensor) -> torch.Tensor:
    """-mean/std of the batch's long-short returns; 0 (no gradient) with fewer than 2 dates."""
    return _sharpe(ls_returns, torch.ones_like(ls_returns, dtype=torch.bool))


def combined_loss(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    date_of_node: torch.Tensor,
    weights: LossWeights,
    *,
    horizon_weights: dict[str, float] | None = None,
    min_stocks: int = 20,
    tau: float = 0.1,
    shards=None,
    counts: list[int] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum over the active horizons of pinball - rank_ic - ic + sharpe terms, and the
    weighted parts (0-dim tensors, left on the device). ``counts``: each date's number of nodes
    (``DateLayout.of``), so the step reads nothing back.

    ``shards`` (a ``distributed.StepShards``): the batch is one rank's share of a step's dates. The
    result is then that rank's share of the merged batch's loss (the shares sum to it): means are
    taken over the counts of every rank, and the Sharpe term over every rank's dates."""
    names = ("pinball", "rank_ic", "ic", "sharpe")
    horizons = [h for h in outputs if h != "gate"]
    grid = DateLayout.of(date_of_node, counts)
    sums, terms, series = [], [], []
    for h in horizons:
        q, y = outputs[h], targets[h]
        pin, n_pin = _pinball_sum(q, y)
        layout = grid.masked(y, min_stocks)
        p, t = layout.grid(q[:, 2]), layout.grid(y)
        ic, ric = _correlations(p, t, layout.mask, tau)
        sums.append((pin, torch.where(layout.valid, ic, 0.0).sum(), torch.where(layout.valid, ric, 0.0).sum()))
        terms.append(torch.stack([n_pin, layout.valid.sum()]))
        series.append((_long_short(p, t, layout.mask), layout.valid))
    terms = torch.stack(terms)  # (H, 2): the means' denominators: pinball terms, valid dates
    if shards is not None:
        terms = shards.total(terms)
        both = shards.gather(torch.stack([torch.stack([ls, valid.to(ls.dtype)]) for ls, valid in series]))  # (H, 2, D)
        series = [(row[0], row[1] > 0) for row in both]
    total, parts = None, []
    for i, h in enumerate(horizons):
        w_h = (horizon_weights or {}).get(h, 1.0) / len(horizons)
        (pin, ic_sum, ric_sum), (n_pin, n_dates) = sums[i], terms[i].clamp_min(1)
        pin, ic_term, ric_term = pin / n_pin, -ic_sum / n_dates, -ric_sum / n_dates
        sh = _sharpe(*series[i])
        if shards is not None:
            sh = sh / shards.world  # every rank computes it whole
        loss = weights.pinball * pin + weights.rank_ic * ric_term + weights.ic * ic_term + weights.sharpe * sh
        total = loss * w_h if total is None else total + loss * w_h
        parts.append(torch.stack([pin, -ric_term, -ic_term, -sh]).detach() * w_h)
    return total, dict(zip(names, torch.stack(parts).sum(0).unbind()))
