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


@pytest.fixture(scope="session")
def tiny_pipeline():
    """Every dataset of data_engineering and graph_construction on the tiny market (the same market
    as ``tiny_market``), made by the pipelines' own nodes on an in-memory catalog."""
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory

    return run_in_memory(["data_engineering", "graph_construction"], project_parameters(TINY_PARAMS))


@pytest.fixture(scope="session")
def stocknet_dir():
    from pathlib import Path

    here = Path(__file__).resolve().parents[1]
    for candidate in (here.parent / "shared" / "data" / "stocknet", here / "data" / "01_raw" / "stocknet"):
        if (candidate / "daily_quotes.parquet").exists():
            return candidate
    pytest.skip("the stocknet tables (../shared/data/stocknet) are not present")
