"""The network learns what a linear map of the features cannot hold: on a market with a planted
return-times-size interaction (``short_term_momentum``: the larger half continues its shock, the
smaller reverts more), phase 0's network path ranks validation well above the linear skip's.
On the project's default markets it adds nothing because they hold no such product (research log,
the twelfth session); this keeps training from losing the ability to find one."""

import torch

from atft_kedro.evaluation.metrics import daily_scores
from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory
from atft_kedro.pipelines.training.nodes import build_training_arrays
from atft_kedro.pipelines.typed import typed
from atft_kedro.training.checkpoints import CheckpointStore, model_from_checkpoint
from atft_kedro.training.config import TrainConfig
from atft_kedro.training.data import DateDataset, split_indices
from atft_kedro.training.loop import train_phase
from atft_kedro.training.predict import predict

MARKET = {"raw": {"synthetic_size": "tiny", "synthetic_seed": 11,
                  "synthetic_overrides": {"short_term_momentum": 0.4, "n_stocks": 200, "n_days": 400}},
          "graph": {"k": 6, "window": 40, "min_periods": 25}}  # fmt: skip


def test_the_network_learns_a_planted_interaction_that_the_linear_skip_cannot(tmp_path):
    params = project_parameters(MARKET)
    data = run_in_memory(["data_engineering", "graph_construction"], params)
    arrays = build_training_arrays(data["model_input"], data["market_context"], data["feature_manifest"], {})
    train_idx, val_idx = (split_indices(arrays, data["splits"], s) for s in ("train", "val"))
    small = {"d_model": 16, "temporal_heads": 2, "gat_heads": 2, "gat_layers": 1}
    cfg = typed(TrainConfig, {**params["training"], "epochs": 3, "patience": 3, "min_stocks": 10, "model": {**params["training"]["model"], **small}})
    store = CheckpointStore(tmp_path)
    history = train_phase(0, arrays, data["graphs"], train_idx, val_idx, cfg, store, data["feature_manifest"], progress=False)
    model = model_from_checkpoint(store.load(0, "best"))
    parts = predict(model, DateDataset(arrays, data["graphs"], val_idx, cfg.window), cfg, torch.device("cpu"), parts=True)
    rank_ic = {c: float(daily_scores(parts, c, "target_1d", 10).rank_ic.mean()) for c in ("pred_1d", "part_network_1d", "part_own_1d")}
    # the linear skip starts at the ridge fit and ranks little; the network finds the product
    assert rank_ic["part_network_1d"] > 0.04 and rank_ic["part_network_1d"] > rank_ic["part_own_1d"] + 0.02, rank_ic
    assert rank_ic["pred_1d"] > history[0]["val_metric"] + 0.02, (rank_ic, history)  # learnt over the epochs
