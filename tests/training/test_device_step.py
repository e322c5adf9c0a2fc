"""Optimized mode's device step: padding to static shapes changes nothing, a non-finite step is
skipped on the device, and the weight average counts on the device as on the host."""

import copy
import math

import numpy as np
import pytest
import torch

from atft_kedro.training.checkpoints import CheckpointStore
from atft_kedro.training.data import ResidentDates, split_indices
from atft_kedro.training.loop import WeightAverage, build_model
from atft_kedro.training.step import DeviceStep

from .conftest import small_config

CPU = torch.device("cpu")


def _stepper(prepared, cfg, model):
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    return DeviceStep(model, optimizer, WeightAverage(model, cfg.ema_decay), cfg, CPU)


def _state(step: DeviceStep) -> list[torch.Tensor]:
    """Every number a step may change: weights, AdamW's moments and step counts, the average."""
    opt = [t for s in step.optimizer.state.values() for t in s.values()]
    return [p.detach().clone() for p in step.model.parameters()] + [t.clone() for t in opt] + \
        [p.detach().clone() for p in step.averaged.module.parameters()]  # fmt: skip


def test_padded_static_batches_train_as_the_batches_themselves(prepared):
    """What a CUDA graph replays: every batch padded to dates_per_batch dates of one node count. On
    the CPU the same step runs eagerly on a padded and on the plain batch from the same weights: the
    loss parts, the GAT's gradient norm and every (clipped) gradient agree, on batches of full steps
    and on a last step with fewer dates (one padding date)."""
    arrays, graphs = prepared["arrays"], prepared["graphs"]
    cfg = small_config(mode="optimized", dates_per_batch=3, model={**small_config().model, "dropout": 0.0})
    torch.manual_seed(0)
    model = build_model(arrays, graphs, cfg, 2, CPU)
    resident = ResidentDates(arrays, graphs, cfg.window, CPU)
    train = split_indices(arrays, prepared["splits"], "train")
    nodes = int(arrays.present.sum(1).max()) + 5  # every date gets padding nodes
    for dates in (train[10:13], train[40:43], train[70:72]):
        b = resident.batch(dates, (3, nodes))
        assert b.x.shape[0] == 3 * nodes and b.counts == [nodes] * 3 and len(b.dates) == 3
        padded, plain = _stepper(prepared, cfg, copy.deepcopy(model)), _stepper(prepared, cfg, copy.deepcopy(model))
        padded(b)
        plain(resident.batch(dates))
        grads = [(p.grad, q.grad) for p, q in zip(padded.model.parameters(), plain.model.parameters(), strict=True)]
        assert sum(g is not None for g, _ in grads) > 10
        scale = max(float(g.abs().max()) for _, g in grads if g is not None)
        for mine, theirs in grads:
            assert (mine is None) == (theirs is None)
            if mine is not None:  # sums in another order: agreement to float32 precision of the gradients' scale
                torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5 * scale)
        a, b = padded.finish(), plain.finish()
        assert a.steps == b.steps == 1 and a.skipped == b.skipped == []
        # the GAT's gradient norm sums the gradients above: the same float32 precision (1.8e-5 apart on one batch of the tiny market)
        assert a.sums == pytest.approx(b.sums, rel=1e-5, abs=1e-7) and a.gat_norms == pytest.approx(b.gat_norms, rel=1e-4)
        assert all(math.isfinite(v) for v in a.sums.values())


def test_a_non_finite_step_changes_nothing_and_is_named_at_the_epoch_end(prepared):
    arrays, graphs = prepared["arrays"], prepared["graphs"]
    cfg = small_config(mode="optimized", dates_per_batch=2)
    torch.manual_seed(0)
    step = _stepper(prepared, cfg, build_model(arrays, graphs, cfg, 2, CPU))
    resident = ResidentDates(arrays, graphs, cfg.window, CPU)
    train = split_indices(arrays, prepared["splits"], "train")
    step(resident.batch(train[10:12]))
    before = _state(step)
    poisoned = resident.batch(train[20:22])
    poisoned.x[3, -1, 0] = float("nan")
    step(poisoned)
    assert all(torch.equal(x, y) for x, y in zip(_state(step), before, strict=True))
    step(resident.batch(train[30:32]))
    done = step.finish()
    assert done.steps == 2 and done.skipped == [list(arrays.dates[train[20:22]])] and len(done.gat_norms) == 2
    assert step.averaged.updates == 2


@pytest.mark.parametrize("decay", [0.9, 0.998])
def test_the_weight_average_counts_on_the_device_as_on_the_host(decay):
    """``update(model, taken)``: the same average as the host's counter over the steps taken; a step
    not taken leaves it as it was."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    net.register_buffer("columns", torch.tensor([2, 0]), persistent=False)  # an index: not averaged
    host, device = WeightAverage(net, decay), WeightAverage(net, decay)
    for n in range(40):
        with torch.no_grad():
            net.weight.add_(torch.randn_like(net.weight))
        taken = n % 7 != 3
        if taken:
            host.update(net)
        device.update(net, torch.tensor(taken))
    assert device.updates == host.updates == 40 - 6
    torch.testing.assert_close(device.module.weight, host.module.weight, rtol=1e-6, atol=1e-6)
    assert torch.equal(device.module.columns, torch.tensor([2, 0]))
    device.updates = 5  # a resumed run sets the count; the next update counts on from it
    device.update(net, torch.tensor(True))
    assert device.updates == 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA graph needs CUDA")
def test_cuda_graph_steps_train_as_eager_steps_on_cuda(prepared, tmp_path, caplog):
    """training.cuda_graph: the step recorded once and replayed gives the eager steps' weights (no
    dropout, so both draw nothing; bf16 autocast in both) and the same history."""
    train, val = split_indices(prepared["arrays"], prepared["splits"], "train"), split_indices(prepared["arrays"], prepared["splits"], "val")[:15]
    from atft_kedro.training.loop import train_phase

    runs = {}
    for graph in (False, True):
        store = CheckpointStore(tmp_path / str(graph))
        cfg = small_config(mode="optimized", dates_per_batch=2, epochs=2, max_train_dates=12, cuda_graph=graph,
                           model={**small_config().model, "dropout": 0.0})  # fmt: skip
        torch.manual_seed(0)
        with caplog.at_level("INFO"):
            history = train_phase(0, prepared["arrays"], prepared["graphs"], train, val, cfg, store, prepared["manifest"], progress=False)
        runs[graph] = history, store.load(0, "last")
    assert "recorded in a CUDA graph" in caplog.text
    (eager, a), (graphed, b) = runs[False], runs[True]
    assert [r["steps"] for r in graphed] == [r["steps"] for r in eager] == [6, 6]
    for key in ("model", "train_weights"):
        for name in a[key]:
            torch.testing.assert_close(b[key][name], a[key][name], rtol=2e-2, atol=2e-3, msg=f"{key} {name}")
    assert np.allclose([r["train_loss"] for r in graphed], [r["train_loss"] for r in eager], rtol=2e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="counts CUDA synchronisations")
@pytest.mark.parametrize("capture", [False, True])
def test_device_steps_never_synchronise_on_cuda(prepared, capture):
    """torch's sync debug mode raises on anything that makes the host wait for the device (a value
    read back, a data-sized op, a scalar taken from a tensor inside an op's arguments): none in a
    step, eager or replayed from a CUDA graph."""
    arrays, graphs = prepared["arrays"], prepared["graphs"]
    cfg = small_config(mode="optimized", dates_per_batch=2)
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model(arrays, graphs, cfg, 2, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, fused=True, capturable=capture)
    step = DeviceStep(model, optimizer, WeightAverage(model, cfg.ema_decay), cfg, device, capture=capture, warmup=1)
    resident = ResidentDates(arrays, graphs, cfg.window, device)
    train = split_indices(arrays, prepared["splits"], "train")
    nodes = int(arrays.present.sum(1).max())
    batches = [resident.batch(train[i : i + 2], (2, nodes)) for i in range(0, 12, 2)]
    step(batches[0])  # first use: kernels compiled, optimizer state made
    step(batches[1])  # with capture: recorded (recording itself synchronises once), then replayed
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for b in batches[2:]:
            step(b)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    done = step.finish()
    assert done.steps == 6 and (step.graph is not None) == capture
