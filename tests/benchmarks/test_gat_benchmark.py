"""GAT layer benchmark: PyG GATConv vs the torch reference vs the fused Triton kernel (CUDA).

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        pytest tests/benchmarks/test_gat_benchmark.py -m benchmark --benchmark-only

Every implementation runs the same layer (projection, attention with edge attributes, aggregation)
on the same random graph, forward and forward+backward, at one date (N=3,800 stocks) and at a
multi-date batch (64 dates x 3,800, block-diagonal). pytest-benchmark's table puts each time next to
the fastest of its group as a ratio. extra_info carries edges/s and, on CUDA, achieved GB/s against
the card's bandwidth and peak memory.
"""

from __future__ import annotations

import pytest
import torch

from atft_kernels import GATLayer, to_edge_index

K, HEADS, CHANNELS, IN_DIM = 20, 4, 16, 64
STOCKS = 3800
SIZES = {"one_date": 1, "64_dates": 64}
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
BANDWIDTH_GBS = {"H100": 3350.0, "H200": 4800.0, "A100": 2039.0}  # HBM peak of the SXM parts


def _graph(dates: int, device: str):
    g = torch.Generator().manual_seed(0)
    n = dates * STOCKS
    local = torch.stack([torch.randperm(STOCKS, generator=g)[:K] for _ in range(STOCKS)])  # (STOCKS, K)
    offsets = torch.arange(dates).repeat_interleave(STOCKS)[:, None] * STOCKS
    neighbors = (local.repeat(dates, 1) + offsets).to(device)  # block-diagonal: (N, K)
    x = torch.randn(n, IN_DIM, generator=g).to(device)
    edge_attr = torch.randn(n, K, 3, generator=g).to(device)
    return x, neighbors, edge_attr


def _pyg_layer(device):
    from torch_geometric.nn import GATConv

    conv = GATConv(IN_DIM, CHANNELS, heads=HEADS, edge_dim=3, add_self_loops=False).to(device)
    return lambda x, neighbors, edge_attr, ei, ea: conv(x, ei, edge_attr=ea)


def _our_layer(backend, device):
    layer = GATLayer(IN_DIM, HEADS, CHANNELS, edge_dim=3, backend=backend).to(device)
    return lambda x, neighbors, edge_attr, ei, ea: layer(x, neighbors, edge_attr)


IMPLS = ["pyg_gatconv", "torch_reference"] + (["triton_fused"] if DEVICE == "cuda" else [])


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("mode", ["forward", "forward_backward"])
@pytest.mark.parametrize("impl", IMPLS)
def test_gat_layer(benchmark, impl, mode, size):
    dates = SIZES[size]
    x, neighbors, edge_attr = _graph(dates, DEVICE)
    edge_index, flat_attr = to_edge_index(neighbors, edge_attr)
    layer = {
        "pyg_gatconv": lambda: _pyg_layer(DEVICE),
        "torch_reference": lambda: _our_layer("torch", DEVICE),
        "triton_fused": lambda: _our_layer("triton", DEVICE),
    }[impl]()
    x.requires_grad_(mode == "forward_backward")

    def step():
        if mode == "forward":
            with torch.no_grad():
                out = layer(x, neighbors, edge_attr, edge_index, flat_attr)
        else:
            out = layer(x, neighbors, edge_attr, edge_index, flat_attr)
            out.sum().backward()
        _sync()
        return out

    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rounds = 20 if DEVICE == "cuda" or dates == 1 else 2  # the minimum of many rounds steadies the ratio on a shared CPU
    benchmark.group = f"{size} {mode}"
    out = benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=1)
    assert torch.isfinite(out).all()
    if benchmark.stats is None:  # --benchmark-disable: one plain run, nothing timed
        return
    seconds = benchmark.stats.stats.min
    edges = x.shape[0] * K
    benchmark.extra_info["edges_per_s"] = edges / seconds
    if DEVICE == "cuda":
        benchmark.extra_info["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
        # bytes the attention must touch at least once: gathered h rows, per-edge logits and
        # indices, residual and output (x2 for forward+backward, reads and scatters)
        elt = x.element_size()
        moved = edges * (HEADS * CHANNELS * elt + HEADS * elt + 8) + 2 * x.shape[0] * HEADS * CHANNELS * elt
        moved *= 2 if mode == "forward_backward" else 1
        name = torch.cuda.get_device_name()
        peak = next((bw for key, bw in BANDWIDTH_GBS.items() if key in name), None)
        benchmark.extra_info["achieved_gb_s"] = moved / seconds / 1e9
        if peak:
            benchmark.extra_info["fraction_of_peak_bandwidth"] = moved / seconds / 1e9 / peak
