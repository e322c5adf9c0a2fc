"""Fused GAT neighbour attention + gated residual in Triton (SPEC section 8).

One story, top to bottom: the forward kernel, the backward kernels, the launch configuration and
the two torch.library custom ops with their autograd formula (torch.compile traces through them).
The readable specification is ``reference.py``; tests compare the two.

Forward, one program per block of BLOCK_N destination rows, all heads at once (each neighbour's
whole H*C row is one contiguous gather, its index read once), an exact two-pass softmax: pass 1
loads every slot's logits as one [BLOCK_N, BLOCK_K, BLOCK_H] tile (BLOCK_K = K rounded up to a
power of 2) and reduces it to the max ``m`` and the sum ``l``; pass 2 walks the K slots and adds
``alpha_k h[j_k]`` with alpha_k = exp(z_k - m) / l, exactly as the backward kernels recompute it.
No running rescale of the accumulator (an online softmax's serial chain through m), and the
[E, H, C] tensor of weighted neighbour features is never written. The program keeps ``m``, ``l``
([N, H]) and the aggregate ``agg`` ([N, H*C]) for the backward pass, then writes
``out = sigmoid(gate) * residual + (1 - sigmoid(gate)) * agg``. The tile sets the forward's row
block on a GPU (``_forward_rows``: 8 rows at K = 20 and 4 heads).

Backward (SPEC 8.1), per destination i and head, with s = sigmoid(gate), G the upstream gradient:
    d agg_i   = (1 - s) G_i
    D_i       = d agg_i . agg_i                     (one dot per row replaces a sum over k)
    alpha_k   = exp(z_k - m_i) / l_i                (recomputed, never stored)
    d alpha_k = d agg_i . h[j_k]
    d z_k     = alpha_k (d alpha_k - D_i);  d e_k = d z_k * (1 if e_k > 0 else negative_slope)
    d s_dst_i = sum_k d e_k;  d edge_logits[i, k] = d e_k
    d s_src[j_k] += d e_k;    d h[j_k] += alpha_k d agg_i        (scatters: relaxed fp32 atomics)
The gate and residual gradients come from the same loads of G, in the destination kernel:
    d residual = s G;  d gate = s (1 - s) sum_i G_i . (residual_i - agg_i)
(each program writes its rows' part of that sum; torch adds the few partial sums, in a fixed order).

The edge term (constexpr EDGE): none (0); edge logits [N, K, H] read per slot (1); or edge
attributes [N, K, E] and a weight [H, E], the logits computed in the kernels as
sum_c a[i, k, c] w[h, c] (2; see ``_edge_term`` for the two orders of that sum). In mode 2 no
[N, K, H] tensor is written, read or differentiated outside: the destination backward kernel also
adds d w[h, c] = sum over its slots of d e[i, k, h] a[i, k, c], one part per program, which torch
adds in a fixed order.

Deterministic backward (``deterministic=True``, or torch's deterministic algorithms on): atomics
add in whatever order the programs reach them, so two runs differ in the last bits. Instead the
destination kernel only writes d e per slot, and a second kernel, one program per block of
source rows, gathers over the reverse graph (each source's incoming slots, in slot order: the
transpose of the neighbour lists, built by a stable sort on the device when the backward pass starts):
    d s_src[j] = sum over slots (i, k) with j_k = j of d e_ik
    d h[j]     = sum over the same slots of alpha_ik d agg_i       (alpha recomputed from m, l)
The same sums in the same order every run, no zeroed buffers, and no contention on hubs (a hub's
program loops over its in-degree instead).
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

_NEG = tl.constexpr(-1.0e30)  # masked logits: a large negative number, not -inf (exp(-inf - -inf) is nan)


@triton.jit
def _edge_term(e, edge_ptr, w_ptr, slot, valid, heads, head_mask, vh, HEADS: tl.constexpr, EDGE: tl.constexpr,
               E: tl.constexpr, BLOCK_E: tl.constexpr, ACC: tl.constexpr, TILE: tl.constexpr = True):  # fmt: skip
    """e [BLOCK_N, BLOCK_H] plus the edge term of the slots ``slot`` [BLOCK_N]: their edge logits
    (EDGE = 1), or their attributes times the edge weight, sum_c a[slot, c] w[h, c] (EDGE = 2): with
    TILE one [BLOCK_N, BLOCK_E] load of the attribute rows and one product (the forward and the
    destination backward: fewer registers, 80 against 119 in the forward), else one attribute at a
    time (the source kernel, where the tile spilled in bf16). The two orders of that sum agree to
    rounding, not to the bit; each kernel is deterministic either way."""
    if EDGE == 1:
        e += tl.load(edge_ptr + slot[:, None] * HEADS + heads[None, :], mask=vh, other=0.0).to(ACC)
    if EDGE == 2:
        if TILE:
            attrs = tl.arange(0, BLOCK_E)
            amask = valid[:, None] & (attrs < E)[None, :]
            a = tl.load(edge_ptr + slot[:, None] * E + attrs[None, :], mask=amask, other=0.0).to(ACC)
            w = tl.load(w_ptr + heads[:, None] * E + attrs[None, :], mask=head_mask[:, None] & (attrs < E)[None, :], other=0.0).to(ACC)
            e += tl.sum(a[:, None, :] * w[None, :, :], axis=2)
        else:
            for c in tl.static_range(E):
                a = tl.load(edge_ptr + slot * E + c, mask=valid, other=0.0).to(ACC)  # [BLOCK_N]
                w = tl.load(w_ptr + heads * E + c, mask=head_mask, other=0.0).to(ACC)  # [BLOCK_H]
                e += a[:, None] * w[None, :]
    return e


@triton.jit
def _slot_logits(nbr_ptr, s_src_ptr, edge_ptr, w_ptr, s_dst, rows, row_mask, heads, head_mask, k, K,
                 HEADS: tl.constexpr, EDGE: tl.constexpr, E: tl.constexpr, BLOCK_E: tl.constexpr, ACC: tl.constexpr):  # fmt: skip
    """Slot k of every row of the block, all heads: (source index j, 0 on padding [BLOCK_N];
    valid [BLOCK_N]; valid per head [BLOCK_N, BLOCK_H]; pre-activation e [BLOCK_N, BLOCK_H])."""
    j = tl.load(nbr_ptr + rows * K + k, mask=row_mask, other=-1).to(tl.int64)
    valid = j >= 0
    j = tl.where(valid, j, 0)
    vh = valid[:, None] & head_mask[None, :]
    e = s_dst + tl.load(s_src_ptr + j[:, None] * HEADS + heads[None, :], mask=vh, other=0.0).to(ACC)
    e = _edge_term(e, edge_ptr, w_ptr, rows * K + k, valid, heads, head_mask, vh, HEADS, EDGE, E, BLOCK_E, ACC)
    return j, valid, vh, e


@triton.jit
def _leaky_relu(e, negative_slope):
    return tl.where(e > 0, e, e * negative_slope)


@triton.jit
def _gate(gate_ptr, ACC: tl.constexpr):
    """sigmoid(gate): the residual's share of the output."""
    return 1.0 / (1.0 + tl.exp(-tl.load(gate_ptr).to(ACC)))


@triton.jit
def _inverse_sum(l):
    """1 / l, 0 for a row without valid neighbours (l = 0)."""
    return tl.where(l > 0, 1.0 / tl.where(l > 0, l, 1.0), 0.0)


@triton.jit
def _attention_weight(e, m, inv_l, vh, negative_slope):
    """alpha = exp(LeakyReLU(e) - m) / l from the forward pass's softmax state (0 where not ``vh``):
    both backward kernels recompute it so, and must agree."""
    return tl.where(vh, tl.exp(tl.where(vh, _leaky_relu(e, negative_slope) - m, 0.0)) * inv_l, 0.0)


@triton.jit
def _block(N, HEADS: tl.constexpr, C: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
           BLOCK_C: tl.constexpr):  # fmt: skip
    """This program's destination rows and their masks: rows [BLOCK_N]; heads [BLOCK_H]; each
    (head, channel)'s offset in a row of H*C [BLOCK_H, BLOCK_C]; (row, head) offsets in an [N, H]
    tensor [BLOCK_N, BLOCK_H]."""
    rows = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    row_mask = rows < N
    heads = tl.arange(0, BLOCK_H)
    head_mask = heads < HEADS
    feat = heads[:, None] * C + tl.arange(0, BLOCK_C)[None, :]
    feat_mask = head_mask[:, None] & (tl.arange(0, BLOCK_C) < C)[None, :]
    rh = rows[:, None] * HEADS + heads[None, :]
    rh_mask = row_mask[:, None] & head_mask[None, :]
    return rows, row_mask, heads, head_mask, feat, feat_mask, rh, rh_mask


@triton.jit
def _gat_fwd(
    h_ptr,  # [N, H, C] projected node features
    s_src_ptr,  # [N, H] source attention terms
    s_dst_ptr,  # [N, H] destination attention terms
    nbr_ptr,  # [N, K] int, source index per slot, -1 = padding
    edge_ptr,  # [N, K, H] edge logits (EDGE = 1), [N, K, E] edge attributes (EDGE = 2), else unused
    w_ptr,  # [H, E] edge weight (EDGE = 2; else unused)
    res_ptr,  # [N, H*C] residual
    gate_ptr,  # [] pre-sigmoid gate
    out_ptr,  # [N, H*C] output
    agg_ptr,  # [N, H*C] aggregate, kept for backward (ACC dtype)
    m_ptr,  # [N, H] softmax max, kept for backward (ACC dtype)
    l_ptr,  # [N, H] softmax sum, kept for backward (ACC dtype)
    slope_ptr,  # [] LeakyReLU negative slope in the ACC dtype (a float argument would be fp32)
    N,
    K,
    HEADS: tl.constexpr,
    C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_K: tl.constexpr,
    EDGE: tl.constexpr,  # 0: no edge term; 1: edge logits; 2: edge attributes x edge weight
    E: tl.constexpr,  # edge attributes per slot (EDGE = 2)
    BLOCK_E: tl.constexpr,
    ACC: tl.constexpr,
):
    negative_slope = tl.load(slope_ptr)
    rows, row_mask, heads, head_mask, feat, feat_mask, rh, rh_mask = _block(N, HEADS, C, BLOCK_N, BLOCK_H, BLOCK_C)
    s_dst = tl.load(s_dst_ptr + rh, mask=rh_mask, other=0.0).to(ACC)
    # pass 1, the K-tile: every slot's logits at once [BLOCK_N, BLOCK_K, BLOCK_H] -> the exact max and sum
    slots = rows[:, None] * K + tl.arange(0, BLOCK_K)[None, :]
    sources = tl.load(nbr_ptr + slots, mask=row_mask[:, None] & (tl.arange(0, BLOCK_K) < K)[None, :], other=-1).to(tl.int64)
    live = (sources >= 0)[:, :, None] & head_mask[None, None, :]
    logits = s_dst[:, None, :] + tl.load(
        s_src_ptr + tl.where(sources >= 0, sources, 0)[:, :, None] * HEADS + heads[None, None, :], mask=live, other=0.0
    ).to(ACC)
    if EDGE == 1:
        logits += tl.load(edge_ptr + slots[:, :, None] * HEADS + heads[None, None, :], mask=live, other=0.0).to(ACC)
    if EDGE == 2:  # the projection of the edge attributes, one attribute at a time
        for c in tl.static_range(E):
            a = tl.load(edge_ptr + slots * E + c, mask=sources >= 0, other=0.0).to(ACC)  # [BLOCK_N, BLOCK_K]
            w = tl.load(w_ptr + heads * E + c, mask=head_mask, other=0.0).to(ACC)  # [BLOCK_H]
            logits += a[:, :, None] * w[None, None, :]
    z = tl.where(live, _leaky_relu(logits, negative_slope), _NEG)
    m = tl.max(z, axis=1)  # [BLOCK_N, BLOCK_H]
    l = tl.sum(tl.where(live, tl.exp(z - m[:, None, :]), 0.0), axis=1)
    inv_l = _inverse_sum(l)
    # pass 2: the weighted gather, alpha as the backward kernels recompute it (no running rescale)
    agg = tl.zeros([BLOCK_N, BLOCK_H, BLOCK_C], ACC)
    for k in range(0, K):
        j, valid, vh, e = _slot_logits(nbr_ptr, s_src_ptr, edge_ptr, w_ptr, s_dst, rows, row_mask, heads, head_mask, k, K,
                                       HEADS, EDGE, E, BLOCK_E, ACC)  # fmt: skip
        alpha = _attention_weight(e, m, inv_l, vh, negative_slope)
        x = tl.load(
            h_ptr + j[:, None, None] * (HEADS * C) + feat[None, :, :],
            mask=valid[:, None, None] & feat_mask[None, :, :],
            other=0.0,
        ).to(ACC)
        agg += alpha[:, :, None] * x

    s = _gate(gate_ptr, ACC)
    offs = rows[:, None, None] * (HEADS * C) + feat[None, :, :]
    mask = row_mask[:, None, None] & feat_mask[None, :, :]
    res = tl.load(res_ptr + offs, mask=mask, other=0.0).to(ACC)
    tl.store(out_ptr + offs, (s * res + (1.0 - s) * agg).to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(agg_ptr + offs, agg, mask=mask)
    tl.store(m_ptr + rh, m, mask=rh_mask)
    tl.store(l_ptr + rh, l, mask=rh_mask)


@triton.jit
def _gat_bwd(
    h_ptr,  # [N, H, C]
    s_src_ptr,  # [N, H]
    s_dst_ptr,  # [N, H]
    nbr_ptr,  # [N, K]
    edge_ptr,  # [N, K, H] edge logits (EDGE = 1), [N, K, E] edge attributes (EDGE = 2), else unused
    w_ptr,  # [H, E] edge weight (EDGE = 2)
    gate_ptr,  # []
    gout_ptr,  # [N, H*C] upstream gradient
    res_ptr,  # [N, H*C] residual
    agg_ptr,  # [N, H*C] aggregate from the forward pass
    m_ptr,  # [N, H] softmax max from the forward pass
    l_ptr,  # [N, H] softmax sum from the forward pass
    dres_ptr,  # [N, H*C] out: gradient of the residual (its dtype)
    dgate_ptr,  # [programs] out: this program's sum of G . (residual - agg) (ACC dtype)
    dh_ptr,  # [N, H, C] out: gradient of h (ACC dtype, zero-initialised, atomics)
    ds_src_ptr,  # [N, H] out: gradient of s_src (ACC dtype, zero-initialised, atomics)
    ds_dst_ptr,  # [N, H] out: gradient of s_dst (ACC dtype)
    dedge_ptr,  # [N, K, H] out: gradient of edge_logits, or d e of every slot for _gat_bwd_src (ACC dtype)
    dw_ptr,  # [programs, H, E] out: this program's part of the edge weight's gradient (EDGE = 2; ACC dtype)
    slope_ptr,  # [] LeakyReLU negative slope in the ACC dtype (a float argument would be fp32)
    N,
    K,
    HEADS: tl.constexpr,
    C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_E: tl.constexpr,
    EDGE: tl.constexpr,
    E: tl.constexpr,
    ACC: tl.constexpr,
    SCATTER: tl.constexpr,  # False: dh and ds_src are left to _gat_bwd_src, which needs d e of every slot
):
    negative_slope = tl.load(slope_ptr)
    rows, row_mask, heads, head_mask, feat, feat_mask, rh, rh_mask = _block(N, HEADS, C, BLOCK_N, BLOCK_H, BLOCK_C)
    offs = rows[:, None, None] * (HEADS * C) + feat[None, :, :]
    mask = row_mask[:, None, None] & feat_mask[None, :, :]

    s = _gate(gate_ptr, ACC)
    g = tl.load(gout_ptr + offs, mask=mask, other=0.0).to(ACC)  # [BLOCK_N, BLOCK_H, BLOCK_C]
    agg = tl.load(agg_ptr + offs, mask=mask, other=0.0)
    # the gated residual's gradients, from the same loads (no torch pass over G after the kernel)
    tl.store(dres_ptr + offs, (s * g).to(dres_ptr.dtype.element_ty), mask=mask)
    residual = tl.load(res_ptr + offs, mask=mask, other=0.0).to(ACC)
    tl.store(dgate_ptr + tl.program_id(0), tl.sum(tl.sum(tl.sum(g * (residual - agg), axis=2), axis=1), axis=0))
    dagg = (1.0 - s) * g
    big_d = tl.sum(dagg * agg, axis=2)  # [BLOCK_N, BLOCK_H]
    s_dst = tl.load(s_dst_ptr + rh, mask=rh_mask, other=0.0).to(ACC)
    m = tl.load(m_ptr + rh, mask=rh_mask, other=0.0)
    l = tl.load(l_ptr + rh, mask=rh_mask, other=0.0)
    inv_l = _inverse_sum(l)
    ds_dst = tl.zeros([BLOCK_N, BLOCK_H], ACC)
    attrs = tl.arange(0, BLOCK_E)
    dw = tl.zeros([BLOCK_H, BLOCK_E], ACC)  # d w[h, c] = sum over the block's slots of d e[h] a[c]
    for k in range(0, K):
        j, valid, vh, e = _slot_logits(nbr_ptr, s_src_ptr, edge_ptr, w_ptr, s_dst, rows, row_mask, heads, head_mask, k, K,
                                       HEADS, EDGE, E, BLOCK_E, ACC)  # fmt: skip
        alpha = _attention_weight(e, m, inv_l, vh, negative_slope)
        xmask = valid[:, None, None] & feat_mask[None, :, :]
        xoffs = j[:, None, None] * (HEADS * C) + feat[None, :, :]
        x = tl.load(h_ptr + xoffs, mask=xmask, other=0.0).to(ACC)
        dz = alpha * (tl.sum(dagg * x, axis=2) - big_d)
        de = tl.where(vh, tl.where(e > 0, dz, dz * negative_slope), 0.0)
        ds_dst += de
        if EDGE == 2:  # the slots' attribute rows again (just loaded by _edge_term: cache hits)
            amask = valid[:, None] & (attrs < E)[None, :]
            a = tl.load(edge_ptr + (rows * K + k)[:, None] * E + attrs[None, :], mask=amask, other=0.0).to(ACC)
            dw += tl.sum(de[:, :, None] * a[:, None, :], axis=0)
        if EDGE == 1 or not SCATTER:
            tl.store(dedge_ptr + (rows * K + k)[:, None] * HEADS + heads[None, :], de, mask=rh_mask)
        if SCATTER:
            # relaxed: nothing here reads these sums back, so no ordering is needed (red, not atom)
            tl.atomic_add(ds_src_ptr + j[:, None] * HEADS + heads[None, :], de, mask=vh, sem="relaxed")
            tl.atomic_add(dh_ptr + xoffs, alpha[:, :, None] * dagg, mask=xmask, sem="relaxed")
    tl.store(ds_dst_ptr + rh, ds_dst, mask=rh_mask)
    if EDGE == 2:
        part = tl.program_id(0).to(tl.int64) * (HEADS * E)
        tl.store(dw_ptr + part + heads[:, None] * E + attrs[None, :], dw, mask=head_mask[:, None] & (attrs < E)[None, :])


@triton.jit
def _gat_bwd_src(
    s_src_ptr,  # [N, H]
    s_dst_ptr,  # [N, H]
    edge_ptr,  # [N, K, H] edge logits (EDGE = 1), [N, K, E] edge attributes (EDGE = 2), else unused
    w_ptr,  # [H, E] edge weight (EDGE = 2)
    gate_ptr,  # []
    gout_ptr,  # [N, H*C] upstream gradient
    m_ptr,  # [N, H] softmax max from the forward pass
    l_ptr,  # [N, H] softmax sum from the forward pass
    de_ptr,  # [N, K, H] d e of every slot, from _gat_bwd
    rev_ptr,  # [N + 1] int64: source j's incoming slots are rev_slot[rev_ptr[j]:rev_ptr[j + 1]]
    rev_slot_ptr,  # [N * K] int64 slot indices i * K + k, grouped by source, in slot order
    dh_ptr,  # [N, H, C] out: gradient of h (ACC dtype)
    ds_src_ptr,  # [N, H] out: gradient of s_src (ACC dtype)
    slope_ptr,  # [] LeakyReLU negative slope in the ACC dtype
    N,
    K,
    HEADS: tl.constexpr,
    C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_E: tl.constexpr,
    EDGE: tl.constexpr,
    E: tl.constexpr,
    ACC: tl.constexpr,
):
    """Per block of source rows j: dh and ds_src gathered over each source's incoming slots."""
    negative_slope = tl.load(slope_ptr)
    rows, row_mask, heads, head_mask, feat, feat_mask, rh, rh_mask = _block(N, HEADS, C, BLOCK_N, BLOCK_H, BLOCK_C)
    start = tl.load(rev_ptr + rows, mask=row_mask, other=0)
    degree = tl.load(rev_ptr + rows + 1, mask=row_mask, other=0) - start
    s = _gate(gate_ptr, ACC)
    s_src = tl.load(s_src_ptr + rh, mask=rh_mask, other=0.0).to(ACC)
    dh = tl.zeros([BLOCK_N, BLOCK_H, BLOCK_C], ACC)
    ds_src = tl.zeros([BLOCK_N, BLOCK_H], ACC)
    for t in range(0, tl.max(degree, axis=0)):
        live = row_mask & (t < degree)
        slot = tl.load(rev_slot_ptr + start + t, mask=live, other=0)
        i = slot // K
        ih = i[:, None] * HEADS + heads[None, :]
        vh = live[:, None] & head_mask[None, :]
        e = tl.load(s_dst_ptr + ih, mask=vh, other=0.0).to(ACC) + s_src  # as _slot_logits adds them
        e = _edge_term(e, edge_ptr, w_ptr, slot, live, heads, head_mask, vh, HEADS, EDGE, E, BLOCK_E, ACC, TILE=False)
        m, l = tl.load(m_ptr + ih, mask=vh, other=0.0), tl.load(l_ptr + ih, mask=vh, other=0.0)
        alpha = _attention_weight(e, m, _inverse_sum(l), vh, negative_slope)
        gmask = live[:, None, None] & feat_mask[None, :, :]
        dagg = (1.0 - s) * tl.load(gout_ptr + i[:, None, None] * (HEADS * C) + feat[None, :, :], mask=gmask, other=0.0).to(ACC)
        dh += alpha[:, :, None] * dagg
        ds_src += tl.load(de_ptr + slot[:, None] * HEADS + heads[None, :], mask=vh, other=0.0)
    offs = rows[:, None, None] * (HEADS * C) + feat[None, :, :]
    tl.store(dh_ptr + offs, dh, mask=row_mask[:, None, None] & feat_mask[None, :, :])
    tl.store(ds_src_ptr + rh, ds_src, mask=rh_mask)


def reverse_graph(neighbors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The transpose of ``neighbors [N, K]``: (rev_ptr [N + 1], rev_slot [N * K]), source j's
    incoming slots (i * K + k) being ``rev_slot[rev_ptr[j]:rev_ptr[j + 1]]`` in slot order (a stable
    sort; padding sorts last). No host synchronisation."""
    n = neighbors.shape[0]
    flat = neighbors.reshape(-1).to(torch.int64)
    source = torch.where(flat >= 0, flat, n)
    ordered, rev_slot = torch.sort(source, stable=True)
    # where each source's run starts in the sorted list: searchsorted, not bincount (whose output
    # size on CUDA is read back from the device)
    rev_ptr = torch.searchsorted(ordered, torch.arange(n + 1, device=neighbors.device))
    return rev_ptr, rev_slot


def _launch_config(n: int, heads: int, channels: int) -> tuple[int, int, int, int]:
    """(BLOCK_N, BLOCK_H, BLOCK_C, num_warps). Under the CPU interpreter every program costs
    milliseconds, so it gets large row blocks; on a GPU, at most 32 rows and about 2,048 (row, head,
    channel) elements per program of 4 warps keep the accumulator at 16 registers per thread and
    the kernels free of spills (tests/kernels/sm90_compile.py reports both for sm_90)."""
    block_h, block_c = triton.next_power_of_2(max(heads, 1)), triton.next_power_of_2(max(channels, 1))
    if os.environ.get("TRITON_INTERPRET") == "1":
        return max(16, min(256, triton.next_power_of_2(max(n, 1)))), block_h, block_c, 1
    return max(2, min(32, 2048 // (block_h * block_c))), block_h, block_c, 4


def _filled_rows(n: int, block_n: int, sms: int | None) -> int:
    """The row block halved (down to 2) while the grid has fewer than two programs per SM: at one
    date (3,800 rows) 32-row programs would leave 13 of an H200's 132 SMs without one (119
    programs). ``sms``: the GPU's SM count (None: no change, e.g. under the interpreter)."""
    while sms and block_n > 2 and triton.cdiv(n, block_n) < 2 * sms:
        block_n //= 2
    return block_n


@functools.lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int | None:
    if device.type != "cuda" or os.environ.get("TRITON_INTERPRET") == "1":
        return None
    return torch.cuda.get_device_properties(device).multi_processor_count


def _forward_rows(block_n: int, block_h: int, block_k: int) -> int:
    """The forward's BLOCK_N: its K-tile holds BLOCK_N x BLOCK_K x BLOCK_H logits, which on a GPU
    stay within 1,024 (8 rows at K = 20 and 4 heads) to keep the registers near the backward's."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return block_n
    return max(2, min(block_n, 1024 // (block_k * block_h)))


def _acc_torch(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype of inputs of ``dtype`` (fp64 stays fp64, everything else fp32): the
    op and its fake function allocate agg, m and l in it."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _acc_dtype(dtype: torch.dtype):
    """The same, as the kernels' ACC constexpr."""
    return tl.float64 if _acc_torch(dtype) == torch.float64 else tl.float32


# The op as two torch.library custom ops with a registered autograd formula: torch.compile traces
# a model through them without a graph break (their shapes come from the fake functions), which is
# what capturing a training step whole (CUDA graphs, mode="reduce-overhead") needs.


def _edge_inputs(edge_logits, edge_attr, edge_weight, placeholder):
    """(EDGE mode, the edge pointer's tensor, the weight's, E): 1 with edge logits, 2 with
    attributes and a weight, 0 without an edge term (placeholder pointers where unused)."""
    if edge_attr is not None:
        return 2, edge_attr.contiguous(), edge_weight.contiguous(), edge_attr.shape[-1]
    if edge_logits is not None:
        return 1, edge_logits.contiguous(), placeholder, 1
    return 0, placeholder, placeholder, 1


@torch.library.custom_op("atft::gat_attention_fwd", mutates_args=())
def _forward(
    h: torch.Tensor, s_src: torch.Tensor, s_dst: torch.Tensor, neighbors: torch.Tensor, edge_logits: torch.Tensor | None,
    residual: torch.Tensor, gate: torch.Tensor, negative_slope: float, deterministic: bool,
    edge_attr: torch.Tensor | None = None, edge_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (out [N, H*C], and for the backward pass agg [N, H*C], m and l [N, H] in the ACC dtype).
    ``deterministic`` is only read by the backward pass. The edge term: ``edge_logits`` [N, K, H],
    or ``edge_attr`` [N, K, E] with ``edge_weight`` [H, E], projected inside the kernels."""
    n, heads, channels = h.shape
    acc_torch = _acc_torch(h.dtype)
    h, s_src, s_dst, neighbors, residual = (t.contiguous() for t in (h, s_src, s_dst, neighbors, residual))
    mode, edge, weight, n_attr = _edge_inputs(edge_logits, edge_attr, edge_weight, s_dst)
    slope = torch.full((), negative_slope, device=h.device, dtype=acc_torch)
    out = torch.empty((n, heads * channels), device=h.device, dtype=residual.dtype)
    agg = torch.empty((n, heads * channels), device=h.device, dtype=acc_torch)
    m = torch.empty((n, heads), device=h.device, dtype=acc_torch)
    l = torch.empty((n, heads), device=h.device, dtype=acc_torch)
    block_n, block_h, block_c, warps = _launch_config(n, heads, channels)
    block_k = triton.next_power_of_2(max(neighbors.shape[1], 1))
    block_n = _filled_rows(n, _forward_rows(block_n, block_h, block_k), _sm_count(h.device))
    if n > 0:
        _gat_fwd[(triton.cdiv(n, block_n),)](
            h, s_src, s_dst, neighbors, edge, weight, residual, gate.reshape(()).contiguous(), out, agg, m, l, slope,
            n, neighbors.shape[1],
            HEADS=heads, C=channels, BLOCK_N=block_n, BLOCK_H=block_h, BLOCK_C=block_c, BLOCK_K=block_k, EDGE=mode, E=n_attr, BLOCK_E=triton.next_power_of_2(n_attr),
            ACC=_acc_dtype(h.dtype), num_warps=warps,
        )  # fmt: skip
    return out, agg, m, l


@_forward.register_fake
def _(h, s_src, s_dst, neighbors, edge_logits, residual, gate, negative_slope, deterministic, edge_attr=None, edge_weight=None):
    n, heads, channels = h.shape
    acc_torch = _acc_torch(h.dtype)
    agg = h.new_empty((n, heads * channels), dtype=acc_torch)
    return residual.new_empty((n, heads * channels)), agg, h.new_empty((n, heads), dtype=acc_torch), h.new_empty((n, heads), dtype=acc_torch)


@torch.library.custom_op("atft::gat_attention_bwd", mutates_args=())
def _backward(
    grad_out: torch.Tensor, h: torch.Tensor, s_src: torch.Tensor, s_dst: torch.Tensor, neighbors: torch.Tensor,
    edge_logits: torch.Tensor | None, residual: torch.Tensor, gate: torch.Tensor, agg: torch.Tensor, m: torch.Tensor,
    l: torch.Tensor, negative_slope: float, deterministic: bool, edge_attr: torch.Tensor | None = None,
    edge_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> gradients of (h, s_src, s_dst, edge_logits (empty without them), residual, gate,
    edge_weight (empty without it)). ``edge_attr`` is data: no gradient."""
    n, heads, channels = h.shape
    k = neighbors.shape[1]
    h, s_src, s_dst, neighbors, residual = (t.contiguous() for t in (h, s_src, s_dst, neighbors, residual))
    grad_out = grad_out.contiguous()
    mode, edge, weight, n_attr = _edge_inputs(edge_logits, edge_attr, edge_weight, s_dst)
    gate_shape, gate = gate.shape, gate.reshape(()).contiguous()
    acc_torch = agg.dtype
    slope = torch.full((), negative_slope, device=h.device, dtype=acc_torch)
    gather = deterministic  # dh and ds_src written whole by _gat_bwd_src: no zeroing
    dh = (torch.empty if gather else torch.zeros)(h.shape, device=h.device, dtype=acc_torch)
    ds_src = (torch.empty if gather else torch.zeros)((n, heads), device=h.device, dtype=acc_torch)
    ds_dst = torch.empty((n, heads), device=h.device, dtype=acc_torch)
    dedge = torch.empty((n, k, heads), device=h.device, dtype=acc_torch) if mode == 1 or gather else ds_dst
    d_residual = torch.empty_like(residual)
    block_n, block_h, block_c, warps = _launch_config(n, heads, channels)
    block_n = _filled_rows(n, block_n, _sm_count(h.device))
    programs = triton.cdiv(n, block_n)
    d_gate_parts = torch.empty((programs,), device=h.device, dtype=acc_torch)  # one per program
    d_weight_parts = torch.empty((programs, heads, n_attr) if mode == 2 else (1,), device=h.device, dtype=acc_torch)
    if n > 0:
        sizes = dict(HEADS=heads, C=channels, BLOCK_N=block_n, BLOCK_H=block_h, BLOCK_C=block_c,
                     BLOCK_E=triton.next_power_of_2(n_attr), EDGE=mode, E=n_attr, ACC=_acc_dtype(h.dtype), num_warps=warps)  # fmt: skip
        _gat_bwd[(programs,)](
            h, s_src, s_dst, neighbors, edge, weight, gate, grad_out, residual, agg, m, l, d_residual, d_gate_parts,
            dh, ds_src, ds_dst, dedge, d_weight_parts, slope, n, k,
            SCATTER=not gather, **sizes,
        )  # fmt: skip
        if gather:
            rev_ptr, rev_slot = reverse_graph(neighbors)
            _gat_bwd_src[(programs,)](
                s_src, s_dst, edge, weight, gate, grad_out, m, l, dedge, rev_ptr, rev_slot, dh, ds_src, slope, n, k, **sizes
            )  # fmt: skip
    s = torch.sigmoid(gate.to(acc_torch))
    d_gate = (s * (1 - s) * d_gate_parts.sum()).to(gate.dtype).reshape(gate_shape)
    d_edge = dedge.to(edge_logits.dtype) if mode == 1 else h.new_empty((0,))
    if mode == 2:  # the programs' parts, added in a fixed order
        d_weight = (d_weight_parts.sum(0) if n > 0 else torch.zeros_like(edge_weight, dtype=acc_torch)).to(edge_weight.dtype)
    else:
        d_weight = h.new_empty((0,))
    return dh.to(h.dtype), ds_src.to(s_src.dtype), ds_dst.to(s_dst.dtype), d_edge, d_residual, d_gate, d_weight


@_backward.register_fake
def _(grad_out, h, s_src, s_dst, neighbors, edge_logits, residual, gate, agg, m, l, negative_slope, deterministic,
      edge_attr=None, edge_weight=None):  # fmt: skip
    d_edge = torch.empty_like(edge_logits) if edge_logits is not None else h.new_empty((0,))
    d_weight = torch.empty_like(edge_weight) if edge_attr is not None else h.new_empty((0,))
    return (torch.empty_like(h), torch.empty_like(s_src), torch.empty_like(s_dst), d_edge, torch.empty_like(residual),
            torch.empty_like(gate), d_weight)  # fmt: skip


def _setup_context(ctx, inputs, output):
    h, s_src, s_dst, neighbors, edge_logits, residual, gate, negative_slope, deterministic, edge_attr, edge_weight = inputs
    _, agg, m, l = output
    ctx.save_for_backward(h, s_src, s_dst, neighbors, edge_logits, residual, gate, agg, m, l, edge_attr, edge_weight)
    ctx.negative_slope, ctx.deterministic = negative_slope, deterministic


def _gradients(ctx, grad_out, _agg, _m, _l):
    h, s_src, s_dst, neighbors, edge_logits, residual, gate, agg, m, l, edge_attr, edge_weight = ctx.saved_tensors
    dh, ds_src, ds_dst, d_edge, d_residual, d_gate, d_weight = _backward(
        grad_out, h, s_src, s_dst, neighbors, edge_logits, residual, gate, agg, m, l, ctx.negative_slope, ctx.deterministic,
        edge_attr, edge_weight,
    )  # fmt: skip
    return (dh, ds_src, ds_dst, None, d_edge if edge_logits is not None else None, d_residual, d_gate, None, None,
            None, d_weight if edge_attr is not None else None)  # fmt: skip


_forward.register_autograd(_gradients, setup_context=_setup_context)


def gat_attention_triton(h, s_src, s_dst, neighbors, edge_logits, residual, gate, negative_slope=0.2, deterministic=False,
                         edge_attr=None, edge_weight=None):  # fmt: skip
    """The fused op; same signature and result as ``reference.gat_attention_reference``.
    ``deterministic``: the backward gathers over the reverse graph (the same bits every run).
    ``edge_attr`` [N, K, E] with ``edge_weight`` [H, E] instead of ``edge_logits``: the kernels
    compute the edge logits themselves (no [N, K, H] tensor and no GEMM before them)."""
    return _forward(h, s_src, s_dst, neighbors, edge_logits, residual, gate, float(negative_slope), bool(deterministic),
                    edge_attr, edge_weight)[0]  # fmt: skip
