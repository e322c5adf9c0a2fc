"""The fused op: ``gat_attention`` checks its inputs and runs the Triton kernel or the torch
reference (see the package docstring for the contract)."""

from __future__ import annotations

import importlib.util

import torch

from .reference import gat_attention_reference

BACKENDS = ("auto", "triton", "torch")
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None  # looked up once, without importing it


def triton_available() -> bool:
    """Whether the triton package is installed (a constant, so torch.compile traces through it)."""
    return _TRITON_INSTALLED


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if backend == "triton" and not triton_available():
        raise RuntimeError("backend='triton' needs the triton package (pip install triton)")
    return backend


def _check_edge_attr(edge_logits, edge_attr, edge_weight, n, k, heads) -> None:
    if edge_attr is None:
        if edge_weight is not None:
            raise ValueError("edge_weight is given without edge_attr")
        return
    if edge_logits is not None:
        raise ValueError("give either edge_logits or edge_attr with edge_weight, not both")
    if edge_weight is None or edge_attr.dim() != 3 or edge_weight.dim() != 2:
        raise ValueError("edge_attr [N, K, E] needs edge_weight [H, E]")
    e = edge_attr.shape[-1]
    if tuple(edge_attr.shape) != (n, k, e) or tuple(edge_weight.shape) != (heads, e):
        raise ValueError(f"edge_attr must be [N={n}, K={k}, E] and edge_weight [H={heads}, E], "
                         f"got {tuple(edge_attr.shape)} and {tuple(edge_weight.shape)}")  # fmt: skip
    if edge_attr.requires_grad:
        raise ValueError("edge_attr is data here (no gradient flows to it); pass edge_logits for a learned edge input")


def _check(h, s_src, s_dst, neighbors, edge_logits, residual, gate) -> None:
    if h.dim() != 3:
        raise ValueError(f"h must be [N, H, C], got shape {tuple(h.shape)}")
    n, heads, channels = h.shape
    expect = {"s_src": (s_src, (n, heads)), "s_dst": (s_dst, (n, heads)), "residual": (residual, (n, heads * channels))}
    if neighbors.dim() != 2 or neighbors.shape[0] != n:
        raise ValueError(f"neighbors must be [N={n}, K], got shape {tuple(neighbors.shape)}")
    if edge_logits is not None:
        expect["edge_logits"] = (edge_logits, (n, neighbors.shape[1], heads))
    for name, (t, shape) in expect.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if neighbors.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"neighbors must be int32 or int64, got {neighbors.dtype}")
    if gate.numel() != 1:
        raise ValueError(f"gate must be a scalar tensor, got shape {tuple(gate.shape)}")


def gat_attention(
    h: torch.Tensor,
    s_src: torch.Tensor,
    s_dst: torch.Tensor,
    neighbors: torch.Tensor,
    edge_logits: torch.Tensor | None,
    residual: torch.Tensor,
    gate: torch.Tensor,
    negative_slope: float = 0.2,
    backend: str = "auto",
    deterministic: bool | None = None,
    *,
    edge_attr: torch.Tensor | None = None,
    edge_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Sparse multi-head neighbour attention with a gated residual, in one pass.

    .. math::
        e_{ikh} = \mathrm{LeakyReLU}(s^{dst}_{ih} + s^{src}_{j_k h} + \epsilon_{ikh}),\quad
        \alpha_{ikh} = \mathrm{softmax}_k(e_{ikh}),\quad
        out_i = \sigma(g)\, r_i + (1 - \sigma(g)) \,\Vert_h \textstyle\sum_k \alpha_{ikh} h_{j_k h}

    Args:
        h: ``[N, H, C]`` projected node features.
        s_src, s_dst: ``[N, H]`` per-node attention terms (source and destination side).
        neighbors: ``[N, K]`` int32/int64 source index per slot, ``-1`` = padding.
        edge_logits: ``[N, K, H]`` per-edge attention term, or ``None``.
        residual: ``[N, H*C]``; gate: scalar tensor (pre-sigmoid).
        negative_slope: LeakyReLU slope.
        backend: ``"auto"``, ``"triton"`` or ``"torch"``.
        deterministic: Triton's backward gathers over the reverse graph instead of adding with
            atomics, so reruns agree to the bit (``None``: when torch's deterministic algorithms
            are on, as in safe mode). The torch backend is deterministic on the CPU either way.
        edge_attr, edge_weight: instead of ``edge_logits``, ``[N, K, E]`` attributes (data, no
            gradient) and a ``[H, E]`` weight: ``edge_logits = edge_attr @ edge_weight.T``,
            computed inside the Triton kernels (the backward returns the weight's gradient), so no
            ``[N, K, H]`` tensor is written or read.

    Shapes:
        output ``[N, H*C]``; a row without valid neighbours aggregates to 0.
    """
    _check(h, s_src, s_dst, neighbors, edge_logits, residual, gate)
    _check_edge_attr(edge_logits, edge_attr, edge_weight, h.shape[0], neighbors.shape[1], h.shape[1])
    if resolve_backend(backend, h.device) == "torch":
        return gat_attention_reference(h, s_src, s_dst, neighbors, edge_logits, residual, gate, negative_slope, edge_attr, edge_weight)
    from .triton_gat import gat_attention_triton

    if deterministic is None:
        deterministic = torch.are_deterministic_algorithms_enabled()
    return gat_attention_triton(h, s_src, s_dst, neighbors, edge_logits, residual, gate, negative_slope, deterministic,
                                edge_attr, edge_weight)  # fmt: skip


def to_edge_index(neighbors: torch.Tensor, edge_attr: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The padded neighbour list as a PyG-style edge list: ``edge_index [2, E]`` (row 0 the source
    ``j = neighbors[i, k]``, row 1 the destination ``i``) over the valid slots in row-major order,
    and their ``edge_attr [E, D]`` (``None`` when none is given)."""
    valid = neighbors >= 0
    dst = torch.arange(neighbors.shape[0], device=neighbors.device)[:, None].expand_as(neighbors)[valid]
    return torch.stack([neighbors[valid], dst]), (edge_attr[valid] if edge_attr is not None else None)
