"""Data-parallel training under torchrun: two gloo processes on the CPU (slow: each run starts two
Python processes). The ranks must hold the same weights, equal (within float tolerance) to one
process training on the merged batches, and an interrupted distributed run must resume."""

import dataclasses
import json
from dataclasses import asdict
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from atft_kedro.training.batches import date_order
from atft_kedro.training.checkpoints import CheckpointStore
from atft_kedro.training.distributed import Ranks, step_shares
from atft_kedro.training.data import DateDataset, collate_dates, split_indices
from atft_kedro.training.losses import LossWeights, combined_loss
from atft_kedro.training.loop import build_model, train_phase

from tests.pipelines.test_end_to_end import TINY, _kedro, copy_project

from .conftest import small_config
from .ddp_worker import GRADIENT_DATES

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("ddp_worker.py")
CONFIG = dict(mode="optimized", dates_per_batch=4, num_workers=0, epochs=2, max_train_dates=12,
              model={"d_model": 16, "temporal_heads": 2, "gat_heads": 2, "gat_layers": 1, "dropout": 0.0})  # fmt: skip


@pytest.fixture(scope="module")
def data(prepared, tmp_path_factory):
    """The tiny market's arrays, graphs, manifest and split indices on disk, as the workers read them."""
    root = tmp_path_factory.mktemp("ddp_data")
    a, s = prepared["arrays"], prepared["splits"]
    a.save(root / "arrays")
    prepared["graphs"].save(root / "graphs")
    (root / "manifest.json").write_text(json.dumps(prepared["manifest"]))
    np.save(root / "train_idx.npy", split_indices(a, s, "train"))
    np.save(root / "val_idx.npy", split_indices(a, s, "val")[:15])
    return root


def torchrun(data: Path, store: Path, phases: str, kill_after: int | None = None, **config) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
            str(data), str(store), json.dumps(asdict(small_config(**{**CONFIG, **config}))), phases] + ([str(kill_after)] if kill_after is not None else [])  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # one thread a rank: runs repeat to the bit
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


def one_process(prepared, data: Path, store: Path, phases: str, **config) -> None:
    cfg = small_config(**{**CONFIG, **config})
    train_idx, val_idx = np.load(data / "train_idx.npy"), np.load(data / "val_idx.npy")
    for phase in map(int, phases.split(",")):
        train_phase(phase, prepared["arrays"], prepared["graphs"], train_idx, val_idx, cfg, CheckpointStore(store), prepared["manifest"],
                    progress=False)  # fmt: skip


def assert_same(a: dict, b: dict, exact: bool = False) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            # Adam turns float noise in a gradient that is 0 by construction (the attention's key
            # bias: softmax ignores a shift) into steps of about the learning rate (3e-3)
            tol = 1e-3 if k.endswith("in_proj_bias") else 1e-4
            torch.testing.assert_close(a[k], b[k], rtol=tol, atol=tol, msg=k)


def test_ddp_gradients_are_the_gradients_of_the_merged_batch(prepared, data, tmp_path):
    """One step of a phase-2 model on 5 dates, 3 on rank 0 and 2 on rank 1: the loss shares sum to
    the merged batch's loss and DDP's averaged gradients equal its gradients (the Sharpe term,
    a statistic across dates, included)."""
    (tmp_path / "out").mkdir()
    run = torchrun(data, tmp_path / "out", "gradients")
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [torch.load(tmp_path / "out" / f"gradients{r}.pt", weights_only=True) for r in (0, 1)]
    cfg = small_config(**CONFIG)
    torch.manual_seed(cfg.seed)
    model = build_model(prepared["arrays"], prepared["graphs"], cfg, 2, torch.device("cpu"))
    dataset = DateDataset(prepared["arrays"], prepared["graphs"], np.load(data / "train_idx.npy")[:GRADIENT_DATES], cfg.window)
    b = collate_dates([dataset[i] for i in range(GRADIENT_DATES)])
    outputs = model(b.x, b.market, b.date_of_node, b.neighbors, b.edge_attr)
    loss, parts = combined_loss(outputs, b.targets, b.date_of_node, LossWeights(**cfg.loss_weights), min_stocks=cfg.min_stocks, tau=cfg.rank_tau)
    loss.backward()
    assert parts["sharpe"] != 0.0  # the term that needs every rank's dates is in the loss
    torch.testing.assert_close(ranks[0]["loss"] + ranks[1]["loss"], loss.detach(), rtol=1e-6, atol=1e-7)
    want = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert_same(ranks[0]["grads"], ranks[1]["grads"], exact=True)
    assert ranks[0]["grads"].keys() == want.keys()
    for name in want:
        torch.testing.assert_close(ranks[0]["grads"][name], want[name], rtol=1e-4, atol=1e-7, msg=name)


def test_ddp_two_processes_train_as_one_process_on_the_merged_batches(prepared, data, tmp_path):
    """Phases 0 and 1 (GAT unused), then 2, one epoch each: 3 steps of 4 dates, 2 on each rank."""
    run = torchrun(data, tmp_path / "ddp", "0,1,2", epochs=1)
    assert run.returncode == 0, run.stderr[-3000:]
    one_process(prepared, data, tmp_path / "one", "0,1,2", epochs=1)
    ranks = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert_same(ranks[0], ranks[1], exact=True)
    ddp, one = CheckpointStore(tmp_path / "ddp"), CheckpointStore(tmp_path / "one")
    for phase in (0, 1, 2):
        d, o = ddp.load(phase, "last"), one.load(phase, "last")
        assert_same(d["train_weights"], o["train_weights"])
        assert_same(d["model"], o["model"])  # the weight average
        assert [r["steps"] for r in d["history"]] == [r["steps"] for r in o["history"]] == [3]
        for rd, ro in zip(d["history"], o["history"]):
            np.testing.assert_allclose([rd["train_loss"], rd["train_sharpe"], rd["val_metric"]],
                                       [ro["train_loss"], ro["train_sharpe"], ro["val_metric"]], rtol=1e-4, atol=1e-6)  # fmt: skip
    assert_same(ranks[0], ddp.load(2, "last")["train_weights"], exact=True)
    assert ddp.load(2, "last")["history"][-1]["gat_grad_norm"] > 0


def test_an_interrupted_ddp_run_resumes_to_the_same_weights(data, tmp_path):
    whole = torchrun(data, tmp_path / "whole", "0", epochs=3)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = torchrun(data, tmp_path / "broken", "0", kill_after=0, epochs=3)
    assert killed.returncode != 0 and "KeyboardInterrupt" in killed.stderr
    broken = CheckpointStore(tmp_path / "broken")
    assert broken.load(0, "last")["epoch"] == 0 and not broken.load(0, "last")["finished"]
    resumed = torchrun(data, tmp_path / "broken", "0", epochs=3)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = CheckpointStore(tmp_path / "whole").load(0, "last"), broken.load(0, "last")
    assert [r["epoch"] for r in b["history"]] == [0, 1, 2]
    assert_same(a["train_weights"], b["train_weights"], exact=True)
    assert_same(a["model"], b["model"], exact=True)


def test_a_non_finite_batch_on_one_rank_is_skipped_by_both(prepared, data, tmp_path):
    """A NaN in the graph of a date that rank 1 trains on in the first step (a feature would reach
    the next dates' windows too): both ranks skip that step (neither waits for the other), rank 1
    says so, and they end with equal weights."""
    poisoned = tmp_path / "data"
    shutil.copytree(data, poisoned)
    cfg = small_config(**{**CONFIG, "epochs": 1})
    train_idx = np.load(data / "train_idx.npy")
    sample = train_idx[np.sort(np.random.default_rng(cfg.seed * 100_003).choice(len(train_idx), cfg.max_train_dates, replace=False))]
    ranks = Ranks(rank=1, world=2)
    date = sample[step_shares(date_order(len(sample), cfg.seed * 100_003), cfg.dates_per_batch, ranks)[0][0]]  # rank 1's, step 0
    arrays, graphs = prepared["arrays"], prepared["graphs"]
    edge_attr = np.array(graphs.edge_attr)
    edge_attr[graphs.offsets[np.flatnonzero(graphs.dates == arrays.dates[date])[0]], 0, 0] = np.nan
    dataclasses.replace(graphs, edge_attr=edge_attr).save(poisoned / "graphs")
    run = torchrun(poisoned, tmp_path / "ddp", "0", epochs=1, max_bad_batch_fraction=0.5)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"non-finite input on ['{arrays.dates[date]}'" in run.stdout + run.stderr
    (row,) = CheckpointStore(tmp_path / "ddp").load(0, "last")["history"]
    assert (row["steps"], row["skipped"]) == (2, 1)
    weights = [torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert_same(weights[0], weights[1], exact=True)


def test_safe_mode_under_torchrun_is_a_clear_error(data, tmp_path):
    run = torchrun(data, tmp_path / "safe", "0", mode="safe")
    assert run.returncode != 0
    assert "training.mode is 'safe', which trains in one process; set training.mode=optimized" in run.stderr


def test_the_training_pipeline_under_torchrun(tmp_path):
    """What the README says: the data and graphs built by one process, then the training pipeline
    run by two (rank 0 writes; the other rank writes nothing), then evaluation reads its model."""
    project = copy_project(tmp_path)
    _kedro(project, "--pipelines", "data_engineering,graph_construction", "--params", TINY)
    params = TINY + ",training.mode=optimized,training.dates_per_batch=4"
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "atft_kedro",
                          "--pipelines", "training", "--params", params], cwd=project, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "optimized mode, 2 processes" in run.stdout + run.stderr
    assert "Replacing dataset" not in run.stdout + run.stderr and "WARNING" not in run.stdout + run.stderr
    store = CheckpointStore(project / "data/06_models/checkpoints")
    assert store.phases() == [0, 1, 2, 3]
    history = store.load(3, "last")["history"]
    assert history and history[-1]["steps"] == 2  # max_train_dates=8 at 4 dates a step
    _kedro(project, "--pipelines", "evaluation", "--params", TINY)
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    assert metrics["provenance"]["model"]["phase"] == 3
