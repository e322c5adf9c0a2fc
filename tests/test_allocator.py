"""glibc keeps the memory of freed large tensors inside ``freed_memory_kept``, and gives it back after.

The page-fault checks run in a fresh process: in a long one (this test session) what a tensor
costs depends on the holes earlier work left in the heap."""

import json
import re
import resource
import subprocess
import sys

import pytest

from atft_kedro import allocator

needs_glibc = pytest.mark.skipif(allocator.glibc() is None or bool(allocator.user_settings()),
                                 reason="glibc on Linux, without the user's own malloc settings")  # fmt: skip

SCENARIO = r"""
import json, logging, resource
import torch
from atft_kedro import allocator

said = []
handler = logging.Handler()
handler.emit = lambda record: said.append(record.getMessage())
logging.getLogger("atft_kedro.allocator").addHandler(handler)
logging.getLogger("atft_kedro.allocator").setLevel(logging.DEBUG)

def faults(n=8):
    # minor page faults of n tensors of 64 MiB made, written and freed in turn
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        t = torch.empty(16 << 20)
        t.fill_(1.0)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

out = {"outside": faults()}
with allocator.freed_memory_kept() as acted:
    out["acted"] = acted
    before = resident()
    faults(16)  # the heap's first growth to hold them (up to eight tensors' pages in a fresh process)
    out["inside"] = faults()
    out["kept"] = resident() - before
    with allocator.freed_memory_kept() as inner:
        out["inner_acted"] = inner
    out["after_inner"] = faults()
    before_exit = resident()
out["given_back"] = before_exit - resident()
out["said"] = said
print(json.dumps(out))
"""


@needs_glibc
def test_freed_tensors_are_reused_inside_the_block_and_their_memory_given_back_after_it():
    run = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    pages, mib = (64 << 20) // resource.getpagesize(), 1 << 20
    assert out["outside"] >= 6 * pages  # glibc's own way: each new tensor maps its pages afresh
    assert out["acted"] and out["inside"] < pages  # once the heap holds one, eight tensors fault less than one's pages
    assert out["kept"] >= 48 * mib  # freed, and still the process's to reuse
    assert not out["inner_acted"] and out["after_inner"] < pages  # a nested block's end undoes nothing
    assert out["given_back"] >= 48 * mib  # the block's end hands the kept memory back to the system
    said = [m for m in out["said"] if m.startswith("freed memory handed back to the system: ")]
    assert len(said) == 1  # once, at the outermost block's end
    back, before, after = map(float, re.findall(r"(\d+\.\d+) GB", said[0]))
    assert back >= 0.048 * 1.048 and abs(before - after - back) < 0.015  # what it handed back, and the own memory before and after


def test_the_user_s_own_malloc_settings_and_off_are_left_alone(monkeypatch):
    with allocator.freed_memory_kept(on=False) as acted:
        assert not acted
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert allocator.user_settings() == ["MALLOC_TRIM_THRESHOLD_"]
    with allocator.freed_memory_kept() as acted:
        assert not acted
    assert allocator._depth == 0
