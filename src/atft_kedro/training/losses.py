"""Cross-sectional losses (SPEC section 5), computed per date and averaged over valid dates.

A date counts when it has at least ``min_stocks`` finite targets; NaN targets and dates with too
few stocks are masked out, never averaged in as zeros.

Differentiable rank-IC: soft ranks by pairwise sigmoids, r_i = 1/2 + sum_{j != i} sigmoid((p_i - p_j)/tau),
then the Pearson correlation of the soft ranks with the targets' ordinary ranks (Spearman's rho
with one side smoothed). Why this construction: it is exact as tau -> 0, has a gradient everywhere,
needs no extra dependency (sorting-network or optimal-transport soft sorts would), and the O(N^2)
pairwise matrix of one date's cross-section (3,800^2 floats ~ 58 MB) is affordable. ``tau`` is set
relative to the spread of the day's predictions so the smoothing does not depend on their scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from atft_kedro.model.heads import QUANTILES


@dataclass(frozen=True)
class LossWeights:
    pinball: float = 1.0
    rank_ic: float = 0.5
    ic: float = 0.3
    sharpe: float = 0.1


def pinball_loss(quantiles: torch.Tensor, target: torch.Tensor, levels=QUANTILES) -> torch.Tensor:
    """Mean pinball loss over finite targets: quantiles [N, Q], target [N]."""
    ok = torch.isfinite(target)
    if not ok.any():
        return quantiles.sum() * 0.0
    q, y = quantiles[ok], target[ok, None]
    tau = torch.tensor(levels, dtype=q.dtype, device=q.device)
    diff = y - q  # (n, Q)
    return torch.maximum(tau * diff, (tau - 1) * diff).mean()


def _pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm() + eps)


def soft_rank(x: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Pairwise-sigmoid soft ranks (1-based, as the ordinary ranks when tau -> 0)."""
    scale = tau * x.detach().std().clamp_min(1e-8)
    diff = (x[:, None] - x[None, :]) / scale  # (n, n)
    return 0.5 + torch.sigmoid(diff).sum(1)  # includes sigmoid(0) = 1/2 for j = i


def _hard_rank(x: torch.Tensor) -> torch.Tensor:
    return torch.argsort(torch.argsort(x)).to(x.dtype) + 1


def per_date_correlations(
    pred: torch.Tensor, target: torch.Tensor, date_of_node: torch.Tensor, *, min_stocks: int = 20, tau: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (ic [D_valid], soft rank-ic [D_valid], valid date ids)."""
    ics, rics, dates = [], [], []
    for d in torch.unique(date_of_node):
        rows = (date_of_node == d) & torch.isfinite(target)
        if int(rows.sum()) < min_stocks:
            continue
        p, y = pred[rows], target[rows]
        ics.append(_pearson(p, y))
        rics.append(_pearson(soft_rank(p, tau), _hard_rank(y)))
        dates.append(d)
    if not dates:
        empty = pred.new_zeros(0)
        return empty, empty, date_of_node.new_zeros(0)
    return torch.stack(ics), torch.stack(rics), torch.stack(dates)


def long_short_returns(pred: torch.Tensor, target: torch.Tensor, date_of_node: torch.Tensor, min_stocks: int = 20) -> torch.Tensor:
    """Per valid date, the return of a dollar-neutral, unit-gross portfolio with weights
    proportional to the demeaned prediction: w_i = (p_i - mean p) / sum_j |p_j - mean p|."""
    out = []
    for d in torch.unique(date_of_node):
        rows = (date_of_node == d) & torch.isfinite(target)
        if int(rows.sum()) < min_stocks:
            continue
        p = pred[rows] - pred[rows].mean()
        out.append((p / p.abs().sum().clamp_min(1e-12) * target[rows]).sum())
    return torch.stack(out) if out else pred.new_zeros(0)


def sharpe_loss(ls_returns: torch.Tensor) -> torch.Tensor:
    """-mean/std of the batch's long-short returns; 0 (no gradient) with fewer than 2 dates."""
    if ls_returns.numel() < 2:
        return ls_returns.sum() * 0.0
    return -ls_returns.mean() / (ls_returns.std() + 1e-8)


def combined_loss(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    date_of_node: torch.Tensor,
    weights: LossWeights,
    *,
    horizon_weights: dict[str, float] | None = None,
    min_stocks: int = 20,
    tau: float = 0.1,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over the active horizons of pinball - rank_ic - ic + sharpe terms."""
    total = None
    parts = {"pinball": 0.0, "rank_ic": 0.0, "ic": 0.0, "sharpe": 0.0}
    horizons = [h for h in outputs if h != "gate"]
    for h in horizons:
        w_h = (horizon_weights or {}).get(h, 1.0) / len(horizons)
        q, y = outputs[h], targets[h]
        median = q[:, 2]
        pin = pinball_loss(q, y)
        ic, ric, _ = per_date_correlations(median, y, date_of_node, min_stocks=min_stocks, tau=tau)
        ic_term = -ic.mean() if ic.numel() else pin * 0.0
        ric_term = -ric.mean() if ric.numel() else pin * 0.0
        sh = sharpe_loss(long_short_returns(median, y, date_of_node, min_stocks))
        loss = weights.pinball * pin + weights.rank_ic * ric_term + weights.ic * ic_term + weights.sharpe * sh
        total = loss * w_h if total is None else total + loss * w_h
        for name, value in (("pinball", pin), ("rank_ic", -ric_term), ("ic", -ic_term), ("sharpe", -sh)):
            parts[name] += float(value.detach()) * w_h
    return total, parts
