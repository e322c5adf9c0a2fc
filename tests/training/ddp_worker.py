"""One rank of a data-parallel training run, started by the DDP tests under torchrun:

    torchrun --standalone --nproc_per_node=2 tests/training/ddp_worker.py DATA STORE CONFIG_JSON PHASES [KILL_AFTER_EPOCH]
    torchrun --standalone --nproc_per_node=2 tests/training/ddp_worker.py DATA OUT CONFIG_JSON gradients

DATA holds the arrays, graphs, manifest and split indices the test wrote. Each rank trains the
phases (comma-separated) in turn into STORE (rank 0 writes the checkpoints) and saves the weights
it trained as STORE/rank{r}.pt, so the test can compare the ranks. With KILL_AFTER_EPOCH every rank
stops there as a killed run would (KeyboardInterrupt after the epoch's checkpoint).

``gradients``: one step of a new phase-2 model on the first 5 training dates (shares of 3 and 2),
each rank saving its loss share and the gradients DDP left it as OUT/gradients{r}.pt.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

import atft_kedro.training.loop as loop
from atft_kedro.graph.store import GraphSet
from atft_kedro.training.checkpoints import CheckpointStore
from atft_kedro.training.config import TrainConfig
from atft_kedro.training.data import DateDataset, TrainingArrays, collate_dates
from atft_kedro.training.distributed import Ranks, StepShards, join, step_shares, wrap
from atft_kedro.training.losses import LossWeights, combined_loss

GRADIENT_DATES = 5


def main(data: str, store: str, config: str, phases: str, kill_after: str | None = None) -> None:
    data, store = Path(data), CheckpointStore(store)
    arrays, graphs = TrainingArrays.open(data / "arrays"), GraphSet.open(data / "graphs")
    manifest = json.loads((data / "manifest.json").read_text())
    train_idx, val_idx = np.load(data / "train_idx.npy"), np.load(data / "val_idx.npy")
    cfg = TrainConfig(**json.loads(config))

    built = []  # the models the loop builds, the last one the rank's trained model
    build = loop.build_model
    loop.build_model = lambda *args, **kw: built.append(build(*args, **kw)) or built[-1]

    def kill(epoch):
        if kill_after is not None and epoch == int(kill_after):
            raise KeyboardInterrupt

    for phase in map(int, phases.split(",")):
        loop.train_phase(phase, arrays, graphs, train_idx, val_idx, cfg, store, manifest, on_epoch_end=kill, progress=False)
    torch.save(built[-1].state_dict(), store.root / f"rank{Ranks.from_env().rank}.pt")


def gradients(data: str, out: str, config: str) -> None:
    data, cfg, cpu = Path(data), TrainConfig(**json.loads(config)), torch.device("cpu")
    arrays, graphs = TrainingArrays.open(data / "arrays"), GraphSet.open(data / "graphs")
    ranks = join(cpu)
    torch.manual_seed(cfg.seed)
    model = loop.build_model(arrays, graphs, cfg, 2, cpu)
    trained = wrap(model, cpu, ranks, partial=False)
    dataset = DateDataset(arrays, graphs, np.load(data / "train_idx.npy")[:GRADIENT_DATES], cfg.window)
    b = collate_dates([dataset[i] for i in step_shares(list(range(GRADIENT_DATES)), GRADIENT_DATES, ranks)[0]])
    outputs = trained(b.x, b.market, b.date_of_node, b.neighbors, b.edge_attr)
    loss, _ = combined_loss(outputs, b.targets, b.date_of_node, LossWeights(**cfg.loss_weights), min_stocks=cfg.min_stocks,
                            tau=cfg.rank_tau, shards=StepShards(ranks, GRADIENT_DATES))  # fmt: skip
    (loss * ranks.world).backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    torch.save({"loss": loss.detach(), "grads": grads}, Path(out) / f"gradients{ranks.rank}.pt")


if __name__ == "__main__":
    if sys.argv[4:5] == ["gradients"]:
        gradients(*sys.argv[1:4])
    else:
        main(*sys.argv[1:])
