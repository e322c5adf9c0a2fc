"""The fused kernels compile for sm_90 (H100/H200) with the op's GPU launch configuration, without
spilling, and with the memory access the design counts on. Runs on any machine: Triton's compiler
and ptxas need no GPU. The interpreter tests cannot show this (see sm90_compile.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def compiled():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("sm90_compile.py")
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"the kernels did not compile for sm_90:\n{run.stderr[-4000:]}"
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_every_kernel_and_dtype_compiles_without_spills(compiled):
    assert len(compiled) == 32  # 8 dtype/shape/edge/index cases x forward, atomic backward, deterministic backward (2 kernels)
    for r in compiled:
        assert r["target"].startswith("sm_90"), r
        assert r["spill_stores"] == r["spill_loads"] == r["stack_frame"] == 0, r
        assert r["registers"] <= 255, r


def test_fp32_gathers_and_scatters_are_16_byte_vectors(compiled):
    """All heads of a neighbour's row are one contiguous gather: with C=16 the h loads of the forward
    pass and the dh atomics of the backward pass are 4-wide fp32 vectors, not single words."""
    fwd, bwd = (next(r for r in compiled if r["kernel"] == k and r["dtype"] == "fp32" and r["has_edge"] and r["heads"] == 4 and r["scatter"])
                for k in ("_gat_fwd", "_gat_bwd"))  # fmt: skip
    assert fwd["global_ops"].get("ld.global.v4.b32", 0) > 0, fwd
    assert any(op.startswith("atom.global") and op.endswith("v4.f32") for op in bwd["global_ops"]), bwd
    assert any("relaxed" in op for op in bwd["global_ops"] if op.startswith("atom")), bwd


def test_the_deterministic_backward_has_no_atomics(compiled):
    """Its destination kernel writes d e per slot and its source kernel gathers: no atom or red at
    all, and each incoming slot's upstream gradient row is read as 16-byte vectors (C=16, fp32)."""
    for r in compiled:
        if not r["scatter"]:
            assert not any(op.startswith(("atom", "red")) for op in r["global_ops"]), r
    src = next(r for r in compiled if r["kernel"] == "_gat_bwd_src" and r["dtype"] == "fp32" and r["has_edge"] and r["channels"] == 16)
    assert src["global_ops"].get("ld.global.v4.b32", 0) > 0, src
