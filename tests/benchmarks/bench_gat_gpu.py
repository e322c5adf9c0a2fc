"""The fused GAT op on a GPU: accuracy against fp64, time, bandwidth and memory, against the torch
reference and PyG's GATConv measured in the same run. Needs CUDA.

    python tests/benchmarks/bench_gat_gpu.py --json gat_gpu.json

1. Ceiling: a device-to-device copy of 1 GiB (bytes read + written per second).
2. Accuracy: fresh random inputs at N=3,800 and 64 x 3,800, K=20, H=4, C=16; the output and all six
   gradients of each backend against the reference run in fp64, as ||x - ref|| / ||ref||. The
   caching allocator is first filled with NaN, so an output element the kernel never writes shows
   up as NaN instead of passing on stale memory.
3. Time (triton.testing.do_bench, median of CUDA-event timings): the op forward and
   forward+backward, each backend; and the whole layer (projection, edge term, attention, gated
   residual) against PyG's GATConv on the same graph, at 1, 8 (a training step) and 64 dates, the
   Triton layer also replayed from CUDA graphs (``torch.cuda.make_graphed_callables``), with its
   four projections as one GEMM (``fused_projection``), with the edge logits computed inside the
   kernels (``edge_in_kernel``) and with both; then a torch.profiler table of the Triton
   layer's kernels at 64 dates, to show where the layer's time beyond the op goes. Achieved
   GB/s counts the fewest bytes the op must move (each input read once, each output written once),
   against the measured copy ceiling.
4. Memory: the peak memory a forward+backward adds beyond its inputs, at K = 10, 20, 40 and C = 16,
   32: a fused op should grow with N*K*H (the edge-logit gradient), the reference with N*K*H*C.
5. Hubs: forward+backward on graphs whose in-degrees are as skewed as real kNN graphs' (sources
   drawn with probability ~ rank^-0.4: the largest in-degree about 300 against a mean of K), the
   atomic backward against the deterministic one (reverse-graph gathers), and whether two runs of
   each give the same bits.

``triton_deterministic`` is the fused op with ``deterministic=True`` (its backward gathers over
the reverse graph instead of adding with atomics); it runs in every step beside ``triton_fused``.

``--extra name=path.py:function`` adds another implementation of the op with the same signature
(e.g. an earlier kernel, to compare versions in one run). ``--smoke`` runs every step on the CPU at
a tiny size (Triton under TRITON_INTERPRET=1), to check the script before spending GPU time.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os

import time

import torch

DEVICE = "cuda"
STOCKS, K, HEADS, CHANNELS, IN_DIM = 3800, 20, 4, 16, 64
SIZES = {"one_date": 1, "64_dates": 64}
GRADS = ("h", "s_src", "s_dst", "edge_logits", "residual", "gate")


def _inputs(n, k, heads, channels, dtype, seed, dates=1):
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    per = n // dates
    local = torch.randint(0, per, (n, k), device=DEVICE, generator=g)
    neighbors = local + (torch.arange(n, device=DEVICE) // per * per)[:, None]  # block-diagonal by date
    neighbors[torch.rand(n, k, device=DEVICE, generator=g) < 0.1] = -1  # some padding, as real graphs have
    t = {
        "h": torch.randn(n, heads, channels, device=DEVICE, generator=g),
        "s_src": torch.randn(n, heads, device=DEVICE, generator=g),
        "s_dst": torch.randn(n, heads, device=DEVICE, generator=g),
        "edge_logits": torch.randn(n, k, heads, device=DEVICE, generator=g),
        "residual": torch.randn(n, heads * channels, device=DEVICE, generator=g),
        "gate": torch.tensor(0.3, device=DEVICE),
    }
    return {name: v.to(dtype).requires_grad_() for name, v in t.items()}, neighbors


def _call(op, t, neighbors):
    return op(t["h"], t["s_src"], t["s_dst"], neighbors, t["edge_logits"], t["residual"], t["gate"], 0.2)


def _bench(fn) -> float:
    """Median milliseconds: CUDA-event timings on the GPU, a host clock in the CPU smoke test."""
    if DEVICE == "cuda":
        from triton.testing import do_bench

        return do_bench(fn, warmup=25, rep=200, return_mode="median")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[1]


class _PeakMemory:
    """Peak memory allocated inside the block beyond what was allocated on entry (0 on CPU)."""

    def __enter__(self):
        self.extra_mb = 0.0
        if DEVICE == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc):
        if DEVICE == "cuda":
            torch.cuda.synchronize()
            self.extra_mb = (torch.cuda.max_memory_allocated() - self.base) / 2**20


def _poison_cache(gib: float = 4.0) -> None:
    """Leave NaN in the caching allocator's free blocks, so unwritten outputs read as NaN."""
    if DEVICE != "cuda":
        return
    torch.cuda.synchronize()
    blocks = [torch.full((1 << 26,), float("nan"), device="cuda") for _ in range(int(gib * 4))]  # 256 MiB each
    del blocks


def accuracy(ops: dict, dates: int, dtype, seed: int) -> dict:
    from atft_kernels import gat_attention_reference

    n = dates * STOCKS
    t, neighbors = _inputs(n, K, HEADS, CHANNELS, dtype, seed, dates)
    t64 = {name: v.detach().double().requires_grad_() for name, v in t.items()}
    ref = _call(gat_attention_reference, t64, neighbors)
    upstream = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, [t64[g] for g in GRADS], upstream)
    rows = {}
    for name, op in ops.items():
        _poison_cache()
        out = _call(op, t, neighbors)
        grads = torch.autograd.grad(out, [t[g] for g in GRADS], upstream.to(out.dtype))
        rel = lambda a, b: float((a.detach().double() - b).norm() / b.norm())  # noqa: E731
        rows[name] = {"out": rel(out, ref), **{f"d_{g}": rel(d, r) for g, d, r in zip(GRADS, grads, ref_grads)}}
    return rows


def op_bytes(n: int, k: int, heads: int, channels: int, elt: int, backward: bool) -> int:
    """Fewest bytes of the op: inputs read once, outputs written once (fp32 softmax state)."""
    hc = n * heads * channels
    fwd = hc * elt + 2 * n * heads * elt + n * k * 8 + n * k * heads * elt + hc * elt  # h, s_src/dst, nbr, edge, residual
    fwd += hc * elt + hc * 4 + 2 * n * heads * 4  # out, agg, m, l
    if not backward:
        return fwd
    # backward reads h, s_src/dst, nbr, edge, grad_out, agg, m, l, residual; writes dh, ds_src/dst, dedge, dresidual
    bwd = 2 * hc * elt + 2 * n * heads * elt + n * k * 8 + n * k * heads * elt + hc * elt + hc * 4 + 2 * n * heads * 4
    bwd += hc * 4 + 2 * n * heads * 4 + n * k * heads * 4 + hc * elt
    return fwd + bwd


def timing(ops: dict, dates: int, dtype, ceiling_gbs: float) -> dict:
    n = dates * STOCKS
    t, neighbors = _inputs(n, K, HEADS, CHANNELS, dtype, 1, dates)
    upstream = torch.randn(n, HEADS * CHANNELS, device=DEVICE, dtype=dtype)
    leaves = [t[g] for g in GRADS]
    rows = {}
    for name, op in ops.items():
        def fwd():
            with torch.no_grad():
                _call(op, t, neighbors)

        def fwd_bwd():
            torch.autograd.grad(_call(op, t, neighbors), leaves, upstream)

        row = {}
        for mode, fn in (("forward", fwd), ("forward_backward", fwd_bwd)):
            ms = _bench(fn)
            moved = op_bytes(n, K, HEADS, CHANNELS, t["h"].element_size(), mode == "forward_backward")
            row[mode] = {"ms": ms, "gb_s": moved / ms / 1e6, "of_copy_ceiling": moved / ms / 1e6 / ceiling_gbs,
                         "edges_per_s": n * K / ms * 1e3}  # fmt: skip
        rows[name] = row
    return rows


# the Triton layer's options, each timed beside it: name -> (edge attributes per slot, GATLayer options)
LAYER_VARIANTS = {
    "fused_projection": (3, {"fused_projection": True}),  # h, s_src, s_dst and the residual from one GEMM
    "edge_in_kernel": (3, {"edge_in_kernel": True}),  # the edge logits inside the kernels
    "both": (3, {"fused_projection": True, "edge_in_kernel": True}),
    "e8": (8, {}),  # the model's 8 edge attributes: more bytes per slot than H = 4 logits
    "edge_in_kernel_e8": (8, {"edge_in_kernel": True}),
}


def _layer_inputs(dates: int, edge_dims=(3,)):
    """A random graph of ``dates`` dates: x [N, IN_DIM] (with a gradient), neighbours [N, K], and
    {edge attributes per slot: edge_attr [N, K, that many]}."""
    n = dates * STOCKS
    _, neighbors = _inputs(n, K, 1, 1, torch.float32, 2, dates)
    x = torch.randn(n, IN_DIM, device=DEVICE, requires_grad=True)
    return x, neighbors, {e: torch.randn(n, K, e, device=DEVICE) for e in edge_dims}


def layer_timing(dates: int, backends: list[str]) -> dict:
    """The whole layer, forward+backward: PyG GATConv vs GATLayer per backend, one random graph."""
    from torch_geometric.nn import GATConv

    from atft_kernels import GATLayer, to_edge_index

    x, neighbors, attrs = _layer_inputs(dates, (3, 8))
    edge_attr = attrs[3]
    edge_index, flat_attr = to_edge_index(neighbors, edge_attr)
    conv = GATConv(IN_DIM, CHANNELS, heads=HEADS, edge_dim=3, add_self_loops=False).to(DEVICE)
    layers = {"pyg_gatconv": lambda: conv(x, edge_index, edge_attr=flat_attr)}
    for backend in backends:
        layer = GATLayer(IN_DIM, HEADS, CHANNELS, edge_dim=3, backend=backend).to(DEVICE)
        layers[f"gatlayer_{backend}"] = lambda layer=layer: layer(x, neighbors, edge_attr)
        if backend == "triton":
            for name, (edge_dim, options) in LAYER_VARIANTS.items():
                variant = GATLayer(IN_DIM, HEADS, CHANNELS, edge_dim=edge_dim, backend=backend, **options).to(DEVICE)
                layers[f"gatlayer_triton_{name}"] = lambda variant=variant, a=attrs[edge_dim]: variant(x, neighbors, a)
        if DEVICE == "cuda" and backend == "triton":  # forward and backward each replayed from a CUDA graph
            graphed = torch.cuda.make_graphed_callables(layer, (x, neighbors, edge_attr))
            layers["gatlayer_triton_cuda_graph"] = lambda graphed=graphed: graphed(x, neighbors, edge_attr)
    rows = {}
    for name, f in layers.items():
        with _PeakMemory() as peak:
            ms = _bench(lambda f=f: f().sum().backward())
        rows[name] = {"ms": ms, "peak_extra_mb": peak.extra_mb}
    return rows


def layer_profile(dates: int, rows: int = 25) -> list[dict]:
    """Where the Triton layer's forward+backward spends device time at ``dates`` dates: torch.profiler's
    kernels, by total device time (5 profiled iterations after 3 untimed)."""
    from torch.profiler import ProfilerActivity, profile

    from atft_kernels import GATLayer

    x, neighbors, attrs = _layer_inputs(dates)
    edge_attr = attrs[3]
    layer = GATLayer(IN_DIM, HEADS, CHANNELS, edge_dim=3, backend="triton").to(DEVICE)
    for _ in range(3):
        layer(x, neighbors, edge_attr).sum().backward()
    cuda = DEVICE == "cuda"
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            layer(x, neighbors, edge_attr).sum().backward()
        if cuda:
            torch.cuda.synchronize()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    return [{"name": e.key[:90], "ms_per_iteration": getattr(e, key) / 5 / 1e3, "calls_per_iteration": e.count / 5}
            for e in events[:rows] if getattr(e, key) > 0]  # fmt: skip


def memory(ops: dict) -> list[dict]:
    rows = []
    n = 64 * STOCKS
    for k, channels in ((10, 16), (20, 16), (40, 16), (20, 32)):
        t, neighbors = _inputs(n, k, HEADS, channels, torch.float32, 3, 64)
        upstream = torch.randn(n, HEADS * channels, device=DEVICE)
        for name, op in ops.items():
            with _PeakMemory() as peak:
                torch.autograd.grad(_call(op, t, neighbors), [t[g] for g in GRADS], upstream)
            rows.append({"impl": name, "K": k, "C": channels, "peak_extra_mb": peak.extra_mb,
                         "N*K*H_mb": n * k * HEADS * 4 / 2**20, "N*K*H*C_mb": n * k * HEADS * channels * 4 / 2**20})  # fmt: skip
    return rows


def _hub_neighbors(n: int, k: int, dates: int, seed: int) -> torch.Tensor:
    """Per date, sources drawn with probability ~ (rank + 1)^-0.4 over a random ranking of the
    date's stocks (no self loops kept): in-degrees skewed as in the full market's kNN graphs."""
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    per = n // dates
    weights = torch.arange(1, per + 1, device=DEVICE, dtype=torch.float64) ** -0.4
    blocks = []
    for d in range(dates):
        rank = torch.randperm(per, device=DEVICE, generator=g)
        local = rank[torch.multinomial(weights.expand(per, per), k, replacement=False, generator=g)]
        local[local == torch.arange(per, device=DEVICE)[:, None]] = -1
        blocks.append(torch.where(local >= 0, local + d * per, -1))
    return torch.cat(blocks)


def hub_timing(ops: dict, dates: int) -> dict:
    n = dates * STOCKS
    t, _ = _inputs(n, K, HEADS, CHANNELS, torch.float32, 3, dates)
    neighbors = _hub_neighbors(n, K, dates, seed=3)
    upstream = torch.randn(n, HEADS * CHANNELS, device=DEVICE)
    leaves = [t[g] for g in GRADS]
    row = {"max_in_degree": int(torch.bincount(neighbors[neighbors >= 0], minlength=n).max()), "mean_in_degree": float((neighbors >= 0).sum() / n)}
    for name in ("triton_fused", "triton_deterministic"):
        op = ops[name]
        grads = [torch.autograd.grad(_call(op, t, neighbors), leaves, upstream) for _ in range(2)]
        row[name] = {"ms": _bench(lambda op=op: torch.autograd.grad(_call(op, t, neighbors), leaves, upstream)),
                     "reruns_bit_identical": all(torch.equal(a, b) for a, b in zip(*grads))}  # fmt: skip
    row["deterministic_over_atomic"] = row["triton_deterministic"]["ms"] / row["triton_fused"]["ms"]
    return row


def copy_ceiling() -> float:
    a = torch.empty(1 << 28 if DEVICE == "cuda" else 1 << 24, device=DEVICE)  # 1 GiB of fp32 on the GPU
    a.uniform_()
    b = torch.empty_like(a)
    ms = _bench(lambda: b.copy_(a))
    return 2 * a.numel() * 4 / ms / 1e6  # GB/s, read + write


def _extra(spec: str):
    path, _, fn = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, fn or "gat_attention_triton")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", default=None)
    parser.add_argument("--extra", action="append", default=[], help="name=path.py:function, another op to compare")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, Triton interpreted")
    args = parser.parse_args()
    global DEVICE, STOCKS
    if args.smoke:
        if os.environ.get("TRITON_INTERPRET") != "1":
            raise SystemExit("--smoke runs Triton on the CPU: set TRITON_INTERPRET=1")
        DEVICE, STOCKS = "cpu", 40
    elif not torch.cuda.is_available():
        raise SystemExit("bench_gat_gpu needs CUDA; on CPU use pytest tests/benchmarks -m benchmark --benchmark-only")

    from atft_kernels import gat_attention_reference
    from atft_kernels.triton_gat import gat_attention_triton

    ops = {"torch_reference": gat_attention_reference, "triton_fused": gat_attention_triton,
           "triton_deterministic": functools.partial(gat_attention_triton, deterministic=True)}  # fmt: skip
    for spec in args.extra:
        name, _, where = spec.partition("=")
        ops[name] = _extra(where)
    result = {"device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (smoke test)", "torch": torch.__version__}
    import triton

    result["triton"] = triton.__version__
    result["copy_gb_s"] = ceiling = copy_ceiling()
    print(f"{result['device']}: copy ceiling {ceiling:,.0f} GB/s", flush=True)
    result["accuracy"] = {f"{size} {dt}": accuracy(ops, d, dtype, seed=10 + d)
                          for size, d in SIZES.items() for dt, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}  # fmt: skip
    for case, rows in result["accuracy"].items():
        for name, r in rows.items():
            worst = max(r.values())
            print(f"accuracy {case:16s} {name:16s} worst rel. error {worst:.2e} ({max(r, key=r.get)})", flush=True)
    result["op"] = {f"{size} {dt}": timing(ops, d, dtype, ceiling)
                    for size, d in SIZES.items() for dt, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}  # fmt: skip
    result["layer"] = {size: layer_timing(d, ["torch", "triton"]) for size, d in {**SIZES, "8_dates": 8}.items()}  # 8: a training step's
    result["layer_profile_64_dates"] = layer_profile(SIZES["64_dates"])
    result["memory"] = memory(ops)
    result["hubs"] = {size: hub_timing(ops, d) for size, d in SIZES.items()}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)

    print("\nop (median ms; GB/s of the fewest bytes; share of the copy ceiling)")
    for case, rows in result["op"].items():
        ref = rows["torch_reference"]
        for name, r in rows.items():
            cells = "  ".join(f"{m[:3]} {v['ms']:.3f} ms {v['gb_s']:,.0f} GB/s {v['of_copy_ceiling']:.0%} x{ref[m]['ms'] / v['ms']:.2f}"
                              for m, v in r.items())  # fmt: skip
            print(f"  {case:16s} {name:16s} {cells}")
    print("layer forward+backward (median ms, speed-up over PyG GATConv, peak extra MiB)")
    for size, rows in result["layer"].items():
        pyg = rows["pyg_gatconv"]["ms"]
        for name, r in rows.items():
            print(f"  {size:10s} {name:18s} {r['ms']:.3f} ms  x{pyg / r['ms']:.2f}  {r['peak_extra_mb']:,.0f} MiB")
    print("the Triton layer's forward+backward at 64 dates, by device time (ms per iteration, calls)")
    for r in result["layer_profile_64_dates"]:
        print(f"  {r['ms_per_iteration']:8.3f} ms {r['calls_per_iteration']:5.1f}x  {r['name']}")
    print("op forward+backward peak extra memory, 64 dates (MiB)")
    for r in result["memory"]:
        print(f"  K={r['K']:2d} C={r['C']:2d} {r['impl']:16s} {r['peak_extra_mb']:8,.0f}   (N*K*H fp32 {r['N*K*H_mb']:.0f}, N*K*H*C {r['N*K*H*C_mb']:.0f})")
    print("hub graphs, forward+backward (median ms; deterministic over atomic; reruns bit-identical)")
    for size, r in result["hubs"].items():
        print(f"  {size:10s} in-degree max {r['max_in_degree']} mean {r['mean_in_degree']:.1f}: atomic {r['triton_fused']['ms']:.3f} ms "
              f"({r['triton_fused']['reruns_bit_identical']}), deterministic {r['triton_deterministic']['ms']:.3f} ms "
              f"({r['triton_deterministic']['reruns_bit_identical']}), x{r['deterministic_over_atomic']:.2f}")  # fmt: skip
    if any(not math.isfinite(v) for rows in result["accuracy"].values() for r in rows.values() for v in r.values()):
        raise SystemExit("a backend left NaN in its output or gradients")


if __name__ == "__main__":
    main()
