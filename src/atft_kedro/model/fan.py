"""Frequency Adaptive Normalization (FAN, Ye et al., NeurIPS 2024) with SAN-style slice statistics.

Per stock (instance) and feature (channel) over the window of T steps, the top-K Fourier
components by amplitude are the non-stationary part; the residual is normalised slice by slice
(Slice-Adaptive Normalization, Liu et al. 2023) and the removed part is kept as an input of its own.
Every statistic is computed on one instance's own window: nothing is pooled across the batch or the
cross-section, so one stock's features never depend on another's.
"""

from __future__ import annotations

import torch
from torch import nn


def remove_dominant_frequencies(x: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, T, F] -> (residual, removed): ``removed`` is the inverse FFT of the top_k
    largest-amplitude frequencies of each (instance, channel); residual = x - removed."""
    t = x.shape[1]
    spec = torch.fft.rfft(x.to(torch.promote_types(x.dtype, torch.float32)), dim=1)  # (B, T//2+1, F)
    k = min(top_k, spec.shape[1])
    top = spec.abs().topk(k, dim=1).indices  # (B, k, F)
    keep = torch.zeros(spec.shape, dtype=torch.bool, device=x.device).scatter_(1, top, True)
    removed = torch.fft.irfft(torch.where(keep, spec, torch.zeros_like(spec)), n=t, dim=1).to(x.dtype)  # (B, T, F)
    return x - removed, removed


def slice_normalise(x: torch.Tensor, slice_len: int, eps: float = 1e-5) -> torch.Tensor:
    """SAN-style: z-score each non-overlapping slice of ``slice_len`` steps per instance and channel
    (a last, shorter slice keeps its own statistics)."""
    b, t, f = x.shape
    full = t - t % slice_len  # steps in whole slices, z-scored all at once as (B, T/L, L, F)
    out = [_zscore(x[:, :full].reshape(b, full // slice_len, slice_len, f), 2, eps).reshape(b, full, f)] if full else []
    if full < t:
        out.append(_zscore(x[:, full:], 1, eps))  # the shorter last slice
    return torch.cat(out, dim=1) if len(out) > 1 else out[0]


def _zscore(x: torch.Tensor, dim: int, eps: float) -> torch.Tensor:
    """(x - mean) / (std + eps) along ``dim`` (population std); a single step becomes 0."""
    if x.shape[dim] == 1:
        return torch.zeros_like(x)
    # mean, then the mean square of the deviations: torch.std_mean over this middle dimension of
    # (B, T/L, L, F) took about 10x longer on the CPU (its Welford kernel does not vectorise here)
    centred = x - x.mean(dim, keepdim=True)
    var = centred.square().mean(dim, keepdim=True)
    std = torch.where(var > 0, var.clamp_min(1e-30).sqrt(), 0.0)  # a constant slice: std 0, gradient finite
    return centred / (std + eps)


class FrequencyAdaptiveNorm(nn.Module):
    """[B, T, F] -> [B, T, 2F]: normalised residual (with a learnable per-feature affine) and the
    removed non-stationary part."""

    def __init__(self, n_features: int, top_k: int = 3, slice_len: int = 5) -> None:
        super().__init__()
        self.top_k, self.slice_len = top_k, slice_len
        self.weight = nn.Parameter(torch.ones(n_features))
        self.bias = nn.Parameter(torch.zeros(n_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual, removed = remove_dominant_frequencies(x, self.top_k)  # (B, T, F) each
        normed = slice_normalise(residual, self.slice_len) * self.weight + self.bias  # (B, T, F)
        return torch.cat([normed, removed], dim=-1)  # (B, T, 2F)
