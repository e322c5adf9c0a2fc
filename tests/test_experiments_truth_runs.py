"""experiments/truth_runs.py on the tiny market: the oracle and the privileged filter scored as the
model is, written as seeds.py runs that seeds.py --markets reads."""

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import seeds  # noqa: E402
import truth_runs  # noqa: E402


def test_the_oracle_scores_as_the_evaluations_oracle_and_seeds_reads_the_runs(tmp_path, capsys):
    written = truth_runs.truth_runs({"raw": {"synthetic_size": "tiny"}, "evaluation": {"min_stocks": 10}}, tmp_path)
    assert set(written) == {"filter", "oracle"}
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
