"""Temporal blocks of the TFT: gated residual networks, variable selection, the encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GatedResidualNetwork(nn.Module):
    """GRN(x, c) = LayerNorm(skip(x) + GLU(W2 ELU(W1 x + Wc c))) (Lim et al., TFT)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0, d_context: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.context = nn.Linear(d_context, d_hidden, bias=False) if d_context else None
        self.fc2 = nn.Linear(d_hidden, d_hidden)
        self.glu = nn.Linear(d_hidden, 2 * d_out)
        self.skip = nn.Linear(d_in, d_out) if d_in != d_out else nn.Identity()
        self.norm = nn.LayerNorm(d_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        a = self.fc1(x)
        if self.context is not None and context is not None:
            a = a + self.context(context)
        a = self.dropout(self.fc2(F.elu(a)))
        return self.norm(self.skip(x) + F.glu(self.glu(a), dim=-1))


class VariableSelection(nn.Module):
    """TFT-style variable selection with linear per-feature embeddings, without one network per feature.

    Each feature f has an embedding e_f = x_f w_f + b_f (w_f, b_f in R^d) and a selection weight v_f
    from a GRN of all features (and the context). The selected vector is sum_f v_f e_f =
    (v * x) @ W + v @ B: two matrix products instead of F networks or an [N, T, F, d] tensor.
    Parameters grow as F*d (the seed's per-feature GRNs grew as F * 3 d^2).

    ``gates="sigmoid"`` (default) gates every feature on its own in (0, 1); ``"softmax"`` is TFT's
    original, where the weights sum to 1 and features compete. With ~100 weak features the softmax
    starts by scaling each one down ~100x: measured on the small market (phase 0, weight average on,
    two seeds), validation RankIC after 3 epochs was 0.023 and 0.021 with sigmoid gates against 0.015
    and 0.018 with the softmax.
    """

    def __init__(self, n_features: int, d_model: int, dropout: float = 0.0, d_context: int | None = None, gates: str = "sigmoid"):
        super().__init__()
        if gates not in ("sigmoid", "softmax"):
            raise ValueError(f"variable selection gates must be 'sigmoid' or 'softmax', got {gates!r}")
        self.gates = gates
        self.weight = nn.Parameter(torch.empty(n_features, d_model))
        self.bias = nn.Parameter(torch.zeros(n_features, d_model))
        self.selector = GatedResidualNetwork(n_features, d_model, n_features, dropout, d_context)
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.selector(x, context)  # (N, T, F)
        v = torch.sigmoid(logits) if self.gates == "sigmoid" else torch.softmax(logits, dim=-1)  # (N, T, F)
        return (v * x) @ self.weight + v @ self.bias, v  # (N, T, d), (N, T, F)


class TemporalEncoder(nn.Module):
    """LSTM -> gated skip -> causal multi-head self-attention -> gated skip -> GRN; the last step
    is each stock's vector. Only the last step is used, so only its attention query is computed:
    under the causal mask it attends to every step, exactly as in the full [T, T] attention."""

    def __init__(self, d_model: int, n_heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(d_model, d_model, batch_first=True)
        self.lstm_gate = nn.Linear(d_model, 2 * d_model)
        self.lstm_norm = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.attn_gate = nn.Linear(d_model, 2 * d_model)
        self.attn_norm = nn.LayerNorm(d_model)
        self.out = GatedResidualNetwork(d_model, d_model, d_model, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)  # (N, T, d)
        h = self.lstm_norm(x + F.glu(self.lstm_gate(h), dim=-1))  # (N, T, d)
        last = h[:, -1:]  # (N, 1, d)
        a, _ = self.attn(last, h, h, need_weights=False)  # (N, 1, d)
        z = self.attn_norm(last + F.glu(self.attn_gate(a), dim=-1))  # (N, 1, d)
        return self.out(z[:, 0])  # (N, d)
