"""Test-wide settings. The environment must be set before torch/triton/kedro are imported."""

import os

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on the CPU interpreter here

import pytest  # noqa: E402

from atft_kedro.data.synthetic import SyntheticConfig, generate_market  # noqa: E402


@pytest.fixture(scope="session")
def tiny_market():
    return generate_market(SyntheticConfig.sized("tiny", seed=11))


TINY_PARAMS = {"raw": {"synthetic_size": "tiny", "synthetic_seed": 11}, "graph": {"k": 6, "window": 40, "min_periods": 25}}
# The evaluation of a tiny run: its dates have 60 stocks, and LightGBM stops 20 trees after its best
# validation RankIC (the default's 100 more trees cost a fit about 0.5 s here, with nothing to test)
TINY_EVALUATION = {"min_stocks": 10, "lightgbm": {"early_stopping": 20}}


@pytest.fixture(scope="session")
def tiny_pipeline():
    """Every dataset of data_engineering and graph_construction on the tiny market (the same market
    as ``tiny_market``), made by the pipelines' own nodes on an in-memory catalog."""
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory

    return run_in_memory(["data_engineering", "graph_construction"], project_parameters(TINY_PARAMS))


WALK_FORWARD_TRAINING = {"epochs": 1, "max_train_dates": 4, "min_stocks": 10,
                         "model": {"d_model": 16, "temporal_heads": 2, "gat_heads": 2, "gat_layers": 1}}  # fmt: skip
WALK_FORWARD_PARAMS = {**TINY_PARAMS, "splits": {"n_folds": 2}, "training": WALK_FORWARD_TRAINING}


@pytest.fixture(scope="session")
def two_fold_run(tmp_path_factory):
    """The tiny market walk-forward (two folds, phases of one epoch) through all four pipelines on
    an in-memory catalog, trained once a session: -> (outputs, parameters, the checkpoints' root).
    Tests read these checkpoints; a test that changes them works on a copy."""
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory
    from atft_kedro.training.checkpoints import CheckpointStore

    params = project_parameters({**WALK_FORWARD_PARAMS, "evaluation": {**TINY_EVALUATION, "importance_dates": 3}})
    root = tmp_path_factory.mktemp("two_fold_run") / "checkpoints"
    out = run_in_memory(["data_engineering", "graph_construction", "training", "evaluation"], params, inputs={"checkpoints": CheckpointStore(root)})
    return out, params, root


def stopped_in_its_last_phase(root, to):
    """A copy at ``to`` of ``two_fold_run``'s checkpoints (at ``root``) as a run stopped before fold
    1's last phase ended leaves them -> its store. The fixture's own stay as the run left them."""
    import shutil

    from atft_kedro.training.checkpoints import CheckpointStore

    shutil.copytree(root, to, dirs_exist_ok=True)
    store = CheckpointStore(to)
    store.fold(1).path(3, "last").unlink()
    return store


@pytest.fixture(scope="session")
def stocknet_dir():
    from pathlib import Path

    here = Path(__file__).resolve().parents[1]
    for candidate in (here.parent / "shared" / "data" / "stocknet", here / "data" / "01_raw" / "stocknet"):
        if (candidate / "daily_quotes.parquet").exists():
            return candidate
    pytest.skip("the stocknet tables (../shared/data/stocknet) are not present")
