"""glibc keeps the memory of freed large tensors inside ``freed_memory_kept`` and only there."""

import resource

import pytest
import torch

from atft_kedro import allocator

needs_glibc = pytest.mark.skipif(allocator.glibc() is None or bool(allocator.user_settings()),
                                 reason="glibc on Linux, without the user's own malloc settings")  # fmt: skip


def faults_of_large_tensors(n: int = 8) -> int:
    """Minor page faults of ``n`` tensors of 64 MiB each made, written and freed in turn."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        t = torch.empty(16 << 20)
        t.fill_(1.0)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@needs_glibc
def test_freed_tensors_are_reused_inside_the_block_and_given_back_after_it():
    pages = (64 << 20) // resource.getpagesize()
    outside = faults_of_large_tensors()
    assert outside >= 6 * pages  # each new tensor maps its pages afresh: the behaviour the block changes
    with allocator.freed_memory_kept() as acted:
        assert acted
        inside = faults_of_large_tensors()
    assert inside < 2 * pages  # the first tensor's pages, reused by the seven after it
    assert faults_of_large_tensors() >= 6 * pages  # after the block, glibc's own behaviour again


@needs_glibc
def test_nested_blocks_act_once_and_the_outer_one_restores():
    pages = (64 << 20) // resource.getpagesize()
    with allocator.freed_memory_kept() as outer:
        with allocator.freed_memory_kept() as inner:
            assert outer and not inner
        assert faults_of_large_tensors() < 2 * pages  # the inner block's end did not undo the outer's settings
    assert faults_of_large_tensors() >= 6 * pages


def test_the_user_s_own_malloc_settings_and_off_are_left_alone(monkeypatch):
    with allocator.freed_memory_kept(on=False) as acted:
        assert not acted
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert allocator.user_settings() == ["MALLOC_TRIM_THRESHOLD_"]
    with allocator.freed_memory_kept() as acted:
        assert not acted
    assert allocator._depth == 0
