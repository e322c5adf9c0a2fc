"""GATLayer: multi-head graph attention with edge attributes and a gated residual, on ``gat_attention``."""

from __future__ import annotations

import math

import torch
from torch import nn

from .ops import gat_attention


class GATLayer(nn.Module):
    r"""Graph attention over a fixed-degree neighbour list (PyG ``GATConv`` semantics).

    .. math::
        x'_i = \sigma(g)\, W_r x_i + (1 - \sigma(g)) \Vert_{h} \sum_k \alpha_{ikh} W_h x_{j_k} + b

    with :math:`\alpha` the softmax over valid neighbours of
    :math:`\mathrm{LeakyReLU}(a_{src,h}^\top W_h x_j + a_{dst,h}^\top W_h x_i + a_{edge,h}^\top W_{e,h} e_{ik})`.
    The edge term is computed as ``edge_attr @ W_edge_logit`` with ``W_edge_logit[d, h] =
    sum_c W_e[h*C + c, d] a_edge[h, c]``: identical to projecting the edge features and dotting
    with ``a_edge``, without the ``[N, K, H, C]`` intermediate; the fused op computes that product
    inside its kernels (``edge_in_kernel``).

    Args:
        in_dim: input features per node. heads, head_dim: H and C; output is ``H*C``.
        edge_dim: edge attributes per slot (the graphs' EDGE_ATTRIBUTES; 0 or None: no edge term).
        dropout: dropout on the input features (the fused op has no attention dropout).
        edge_dropout: in training, the share of neighbour slots dropped (set to padding) at random
            on each call (DropEdge); attention then renormalises over the slots that remain.
        negative_slope: LeakyReLU slope. gate_init: initial pre-sigmoid gate (0 -> 0.5).
        backend: passed to ``gat_attention``.
        fused_projection: ``h``, ``s_src``, ``s_dst`` and the residual from one matrix product
            with the stacked weights ``[W; W_r; a_src^T W; a_dst^T W]`` (one read of ``x``, one
            GEMM and its backward, instead of two GEMMs and two reductions over ``h``). The same
            parameters and function, summed in another order; off by default until a GPU has
            timed it (the CPU showed no gain: docs/performance.md).
        edge_in_kernel: the edge attributes and the ``[H, D]`` logit weight go to the op, which
            computes the edge logits itself (on the GPU inside its kernels: no ``[N, K, H]`` tensor
            written and read twice, and no GEMM before the op); ``False``: the logits as a matrix
            product before the op. The torch backend computes the same product either way. Off by
            default until a GPU has timed it: compiled for sm_90 its kernels need more registers
            (fp32: forward 80 against 78, backward 140 against 96; no spills).

    Shapes:
        x ``[N, in_dim]``, neighbors ``[N, K]`` (-1 = padding), edge_attr ``[N, K, edge_dim]`` or None
        -> ``[N, H*C]``.
    """

    def __init__(
        self,
        in_dim: int,
        heads: int = 4,
        head_dim: int = 16,
        edge_dim: int | None = 3,
        dropout: float = 0.0,
        edge_dropout: float = 0.0,
        negative_slope: float = 0.2,
        gate_init: float = 0.0,
        bias: bool = True,
        backend: str = "auto",
        fused_projection: bool = False,
        edge_in_kernel: bool = False,
    ) -> None:
        super().__init__()
        self.in_dim, self.heads, self.head_dim, self.edge_dim = in_dim, heads, head_dim, edge_dim
        self.fused_projection, self.edge_in_kernel = fused_projection, edge_in_kernel
        self.negative_slope, self.backend, self.gate_init = negative_slope, backend, gate_init
        out_dim = heads * head_dim
        self.lin = nn.Linear(in_dim, out_dim, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, head_dim))
        self.att_dst = nn.Parameter(torch.empty(1, heads, head_dim))
        self.lin_edge = nn.Linear(edge_dim, out_dim, bias=False) if edge_dim else None
        self.att_edge = nn.Parameter(torch.empty(1, heads, head_dim)) if edge_dim else None
        self.lin_res = nn.Linear(in_dim, out_dim, bias=False)
        self.gate = nn.Parameter(torch.empty(()))
        self.bias = nn.Parameter(torch.empty(out_dim)) if bias else None
        self.dropout = nn.Dropout(dropout)
        self.edge_dropout = edge_dropout
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.lin, self.lin_edge, self.lin_res):
            if lin is not None:
                nn.init.xavier_uniform_(lin.weight)
        for att in (self.att_src, self.att_dst, self.att_edge):
            if att is not None:
                bound = math.sqrt(6.0 / (att.shape[-2] + att.shape[-1]))
                nn.init.uniform_(att, -bound, bound)
        nn.init.constant_(self.gate, self.gate_init)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, neighbors: torch.Tensor, edge_attr: torch.Tensor | None = None) -> torch.Tensor:
        x = self.dropout(x)
        if self.training and self.edge_dropout > 0:
            drop = torch.rand(neighbors.shape, device=neighbors.device) < self.edge_dropout
            neighbors = neighbors.masked_fill(drop, -1)
        h, s_src, s_dst, residual = self._project(x)  # (N, H, C), (N, H), (N, H), (N, H*C)
        edge_logits = attrs = weight = None
        if self.lin_edge is not None and edge_attr is not None:
            w = self.lin_edge.weight.view(self.heads, self.head_dim, self.edge_dim)  # (H, C, D)
            w_logit = (w * self.att_edge.view(self.heads, self.head_dim, 1)).sum(1)  # (H, D)
            if self.edge_in_kernel:  # the op projects the attributes itself
                attrs, weight = edge_attr, w_logit
            else:
                edge_logits = edge_attr @ w_logit.t()  # (N, K, H)
        out = gat_attention(h, s_src, s_dst, neighbors, edge_logits, residual, self.gate, self.negative_slope, self.backend,
                            edge_attr=attrs, edge_weight=weight)  # (N, H*C)  # fmt: skip
        return out + self.bias if self.bias is not None else out

    def _project(self, x: torch.Tensor):
        """(h [N, H, C], s_src [N, H], s_dst [N, H], residual [N, H*C]) of the layer's input."""
        n, heads, channels = x.shape[0], self.heads, self.head_dim
        if not self.fused_projection:
            h = self.lin(x).view(n, heads, channels)
            return h, (h * self.att_src).sum(-1), (h * self.att_dst).sum(-1), self.lin_res(x)
        w = self.lin.weight.view(heads, channels, self.in_dim)
        stacked = torch.cat([self.lin.weight, self.lin_res.weight, (w * self.att_src.view(heads, channels, 1)).sum(1),
                             (w * self.att_dst.view(heads, channels, 1)).sum(1)])  # (2 H*C + 2 H, in_dim)  # fmt: skip
        h, residual, s_src, s_dst = (x @ stacked.t()).split([heads * channels, heads * channels, heads, heads], dim=1)
        return h.reshape(n, heads, channels), s_src, s_dst, residual
