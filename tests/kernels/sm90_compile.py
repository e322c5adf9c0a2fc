"""Compile the fused GAT kernels for an H100/H200 (sm_90) on a machine without a GPU.

Triton's interpreter (what the CPU tests use) runs the kernels as Python, so it accepts code that
the GPU compiler rejects (a plain global inside a kernel, say). This script takes every kernel
through Triton's real compiler to PTX and through the ptxas that ships with Triton, with the
launch configuration the op uses on a GPU, and prints one JSON line per kernel: registers, spills
and the global memory instructions. It must run without TRITON_INTERPRET (test_gat_compile.py
starts it in a subprocess).

    python tests/kernels/sm90_compile.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("run without TRITON_INTERPRET=1: the interpreter's kernels cannot be compiled")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia.compiler import get_ptxas  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from atft_kernels import triton_gat  # noqa: E402

ACC_DTYPED = {"agg_ptr", "m_ptr", "l_ptr", "dgate_ptr", "dh_ptr", "ds_src_ptr", "ds_dst_ptr", "dedge_ptr", "de_ptr", "dw_ptr", "slope_ptr"}  # fp32, fp64 for fp64
INDEX = {"nbr_ptr", "rev_ptr", "rev_slot_ptr"}  # int64
K = 20  # neighbour slots: the default graph's k (the forward's K-tile is next_power_of_2(K) wide)
E = 7  # edge attributes per slot when the kernels project them (the graphs had 7 until 2026-12-02; at 8 the backward spills: docs/performance.md)


def compile_kernel(fn, dtype: str, heads: int, channels: int, edge: int, scatter: bool = True, arch: int = 90,
                   neighbors: str = "i64") -> dict:  # fmt: skip
    """``edge``: 0 no edge term, 1 edge logits, 2 edge attributes projected in the kernel;
    ``neighbors``: the neighbour lists' index type (training's resident batches are int32)."""
    block_n, block_h, block_c, warps = triton_gat._launch_config(1 << 20, heads, channels)
    acc = "fp64" if dtype == "fp64" else "fp32"
    consts = {"HEADS": heads, "C": channels, "BLOCK_N": block_n, "BLOCK_H": block_h, "BLOCK_C": block_c,
              "EDGE": edge, "E": E if edge == 2 else 1, "ACC": tl.float64 if acc == "fp64" else tl.float32}  # fmt: skip
    if "BLOCK_E" in fn.arg_names:
        consts["BLOCK_E"] = triton.next_power_of_2(consts["E"])
    if "SCATTER" in fn.arg_names:
        consts["SCATTER"] = scatter
    if "BLOCK_K" in fn.arg_names:  # the forward: its own row block, as the op launches it
        consts["BLOCK_K"] = triton.next_power_of_2(K)
        consts["BLOCK_N"] = block_n = triton_gat._forward_rows(block_n, block_h, consts["BLOCK_K"])
    signature = {}
    for name in fn.arg_names:
        if name in consts:
            signature[name] = "constexpr"
        elif name in ("N", "K"):
            signature[name] = "i32"
        elif name == "nbr_ptr":
            signature[name] = f"*{neighbors}"
        elif name in INDEX:
            signature[name] = "*i64"
        else:
            signature[name] = f"*{acc}" if name in ACC_DTYPED else f"*{dtype}"
    # torch's allocations are 16-byte aligned; the launcher tells Triton so at run time as well
    attrs = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(fn.arg_names) if name.endswith("_ptr")}
    constexprs = {(fn.arg_names.index(name),): value for name, value in consts.items()}
    kernel = triton.compile(ASTSource(fn, signature, constexprs=constexprs, attrs=attrs),
                            target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})  # fmt: skip
    ptx = kernel.asm["ptx"]
    target = re.search(r"^\.target (\S+)", ptx, re.M).group(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.ptx")
        with open(path, "w") as f:
            f.write(ptx)
        report = subprocess.run([get_ptxas(arch).path, f"-arch={target}", "-v", path, "-o", os.devnull],
                                capture_output=True, text=True, check=True).stderr  # fmt: skip
    number = lambda pattern: int(re.search(pattern, report).group(1))  # noqa: E731
    ops: dict[str, int] = {}
    for op in re.findall(r"\b((?:ld|st|red|atom)\.global[\w.]*)", ptx):
        ops[op] = ops.get(op, 0) + 1
    return {
        "kernel": fn.__name__, "dtype": dtype, "heads": heads, "channels": channels, "has_edge": edge == 1, "edge": edge, "scatter": scatter, "neighbors": neighbors,
        "target": target, "block_n": block_n, "num_warps": warps,
        "registers": number(r"Used (\d+) registers"), "spill_stores": number(r"(\d+) bytes spill stores"),
        "spill_loads": number(r"(\d+) bytes spill loads"), "stack_frame": number(r"(\d+) bytes stack frame"),
        "global_ops": ops,
    }  # fmt: skip


def main() -> None:
    cases = [("fp32", 4, 16, 1, "i64"), ("fp32", 4, 16, 0, "i64"), ("bf16", 4, 16, 1, "i64"), ("fp64", 4, 16, 1, "i64"),
             ("fp32", 3, 5, 1, "i64"), ("fp32", 4, 16, 2, "i64"), ("bf16", 4, 16, 2, "i64"),  # 2: edge attributes projected in the kernels
             ("bf16", 4, 16, 1, "i32")]  # int32 neighbour lists, as training's resident batches  # fmt: skip
    kernels = [(triton_gat._gat_fwd, True), (triton_gat._gat_bwd, True),  # the atomic backward
               (triton_gat._gat_bwd, False), (triton_gat._gat_bwd_src, False)]  # the deterministic one  # fmt: skip
    for dtype, heads, channels, edge, index in cases:
        for fn, scatter in kernels:
            print(json.dumps(compile_kernel(fn, dtype, heads, channels, edge, scatter, neighbors=index)), flush=True)


if __name__ == "__main__":
    main()
