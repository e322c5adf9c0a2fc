import pytest
import torch

from atft_kedro.threads import torch_threads


def test_torch_threads_sets_the_count_for_the_block_and_restores_it_even_on_an_error():
    before = torch.get_num_threads()
    target = 1 if before > 1 else 2
    with torch_threads(target) as previous:
        assert previous == before
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"):
        with torch_threads(target):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
