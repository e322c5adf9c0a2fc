"""The readable specification of ``gat_attention`` in pure torch, and the fast CPU path.

For destination node i, head h and its K neighbour slots (``neighbors[i, k] = j``, -1 = padding):

    e[i, k, h]   = LeakyReLU(s_dst[i, h] + s_src[j, h] + edge_logits[i, k, h])
    alpha[i,:,h] = softmax of e[i, :, h] over the valid slots (0 on padding)
    agg[i, h, :] = sum_k alpha[i, k, h] * x[j, h, :]
    out[i]       = sigmoid(gate) * residual[i] + (1 - sigmoid(gate)) * agg[i].reshape(H * C)

A row without valid neighbours aggregates to 0. Gathers are flat ``index_select`` calls on the
neighbour list followed by broadcast multiply and sum: their backward passes are plain
``index_add``, much faster on CPU than einsum/bmm or advanced indexing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gat_attention_reference(
    h: torch.Tensor,
    s_src: torch.Tensor,
    s_dst: torch.Tensor,
    neighbors: torch.Tensor,
    edge_logits: torch.Tensor | None,
    residual: torch.Tensor,
    gate: torch.Tensor,
    negative_slope: float = 0.2,
) -> torch.Tensor:
    n, heads, channels = h.shape
    k = neighbors.shape[1]
    valid = neighbors >= 0  # (N, K)
    index = neighbors.clamp(min=0).reshape(-1).long()  # (N*K,)

    e = s_dst.unsqueeze(1) + s_src.index_select(0, index).view(n, k, heads)  # (N, K, H)
    if edge_logits is not None:
        e = e + edge_logits
    mask = valid.unsqueeze(-1)  # (N, K, 1)
    z = F.leaky_relu(e, negative_slope).masked_fill(~mask, torch.finfo(e.dtype).min)
    # padding gets weight 0; a row with no valid slot (uniform softmax) is zeroed by the mask
    alpha = torch.softmax(z, dim=1) * mask  # (N, K, H)

    x_j = h.index_select(0, index).view(n, k, heads, channels)  # (N, K, H, C)
    agg = (alpha.unsqueeze(-1) * x_j).sum(dim=1).reshape(n, heads * channels)  # (N, H*C)
    s = torch.sigmoid(gate)
    return s * residual + (1 - s) * agg
