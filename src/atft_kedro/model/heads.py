"""Quantile heads that cannot cross: the median plus softplus gaps outward."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


class QuantileHead(nn.Module):
    """[N, d] -> [N, 5] quantiles q05 <= q25 <= q50 <= q75 <= q95 by construction."""

    def __init__(self, d_model: int, d_hidden: int | None = None, init_scale: float = 1.0):
        super().__init__()
        d_hidden = d_hidden or d_model
        self.net = nn.Sequential(nn.Linear(d_model, d_hidden), nn.GELU(), nn.Linear(d_hidden, 5))
        with torch.no_grad():  # init_scale < 1: the head starts near a constant (a residual on a linear path)
            self.net[-1].weight.mul_(init_scale)
            self.net[-1].bias.mul_(init_scale)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        raw = self.net(z)  # (N, 5): median, then four gaps
        median = raw[:, 2:3]
        gaps = F.softplus(raw[:, [1, 0, 3, 4]])  # (N, 4) all > 0
        q25 = median - gaps[:, 0:1]
        q05 = q25 - gaps[:, 1:2]
        q75 = median + gaps[:, 2:3]
        q95 = q75 + gaps[:, 3:4]
        return torch.cat([q05, q25, median, q75, q95], dim=1)  # (N, 5)
