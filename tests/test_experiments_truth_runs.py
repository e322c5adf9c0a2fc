"""experiments/truth_runs.py on the tiny market: the oracle, the privileged filter and the ridge
taught on the oracle scored as the model is, written as seeds.py runs that seeds.py --markets
reads."""

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import seeds  # noqa: E402
import truth_runs  # noqa: E402

from .conftest import TINY_EVALUATION  # noqa: E402


def test_the_oracle_scores_as_the_evaluations_oracle_and_seeds_reads_the_runs(tmp_path, capsys):
    written = truth_runs.truth_runs({"raw": {"synthetic_size": "tiny"}, "evaluation": TINY_EVALUATION}, tmp_path)
    assert set(written) == {"filter", "oracle", "taught"}
    oracle = json.loads(written["oracle"].read_text())[0]["metrics"]
    for h, scorers in oracle["horizons"].items():
        # the forecast placed on its rows is the evaluation's oracle column, to the bit
        assert scorers["model"]["rank_ic"] == scorers["oracle"]["rank_ic"], h
        assert oracle["neutral"][h]["model"] == oracle["neutral"][h]["oracle"], h
    filtered = json.loads(written["filter"].read_text())[0]["metrics"]
    assert filtered["horizons"]["1d"]["model"]["rank_ic"] != oracle["horizons"]["1d"]["model"]["rank_ic"]
    # the baselines are the same fits whichever forecaster is scored
    for h in filtered["horizons"]:
        for b in ("ridge", "lightgbm", "momentum_20d", "reversal_1d"):
            assert filtered["horizons"][h][b] == oracle["horizons"][h][b]
    table = seeds.markets_report([seeds.saved_runs([written["filter"]])])
    row = re.search(r"\| 1d \| ([-+][\d.]+) \[", table)
    assert row and abs(float(row[1]) - filtered["paired"]["1d"]["mean"]) < 1e-4
    # validation's forecasts too: --groups pairs two forecasters per date on both splits
    paired = seeds.groups_report([(seeds.saved_runs([written["oracle"]]), seeds.saved_runs([written["filter"]]))])
    assert "### validation RankIC, sector means and beta out of the returns" in paired
    test_1d = re.search(r"### test RankIC: .*?\| 1d \| ([-+][\d.]+) \[", paired, re.S)
    oracle_1d, filter_1d = oracle["horizons"]["1d"]["model"]["rank_ic"], filtered["horizons"]["1d"]["model"]["rank_ic"]
    assert test_1d and abs(float(test_1d[1]) - (oracle_1d - filter_1d)) < 1e-4


def test_a_market_without_a_simulator_is_refused(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="synthetic"):
        truth_runs.truth_runs({"source": "files"}, tmp_path)


def test_the_taught_ridge_learns_the_oracle_from_the_features_alone():
    """Fitted to the oracle, the ridge on the model's features ranks validation's oracle (sectors
    and beta out) far better than the same ridge fitted to the realised returns does, and its
    forecasts sit on the rows truth_runs scores, one per row."""
    import polars as pl

    from atft_kedro.evaluation.baselines import BaselineConfig, ridge_scores, tuned_ridge
    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.features.splits import split_dates
    from atft_kedro.features.targets import sector_beta_residual
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory

    params = project_parameters({"raw": {"synthetic_size": "tiny"}, "evaluation": {"min_stocks": 10}})
    data = run_in_memory(["data_engineering"], params)
    taught = truth_runs.taught_ridge(data, params)
    val_dates = split_dates(data["splits"], "val")
    val = data["model_input"].filter(pl.col("Date").is_in(val_dates.implode()))
    assert [len(s) for s in taught["val"]] == [val.height] * 4
    names = stock_feature_names(data["feature_manifest"])
    realised, _ = tuned_ridge(data["model_input"], names, "target_20d", split_dates(data["splits"], "train"), val_dates,
                              BaselineConfig.from_params(params["evaluation"]))
    keys = {"on": ["Date", "Code"], "how": "left", "maintain_order": "left"}
    truth = val.select("Date", "Code", "Sector33Code").join(data["features"].select("Date", "Code", "beta_60d"), **keys)
    truth = truth.join(data["oracle_returns"].select("Date", "Code", "expected_return_20d"), **keys)
    frame = truth.with_columns(
        sector_beta_residual("expected_return_20d", "beta_60d", "Sector33Code").alias("oracle"),
        taught["val"][3].alias("taught"),
        pl.Series("realised", ridge_scores(val, names, realised)),
    ).drop_nulls("oracle")
    per_date = frame.group_by("Date").agg(pl.corr(c, "oracle", method="spearman") for c in ("taught", "realised"))
    assert per_date.height == val_dates.len()
    taught_ic, realised_ic = per_date["taught"].mean(), per_date["realised"].mean()
    assert taught_ic > 0.1 and taught_ic > realised_ic + 0.05, (taught_ic, realised_ic)  # 0.143 and 0.072 when written
