"""experiments/lightgbm_grid.py on the tiny market: every cell and the evaluation's own settings fitted
per fold, the pick the cell validation ranks best, the test split scored for the pick and the
evaluation's settings."""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

import lightgbm_grid  # noqa: E402


def test_the_pick_is_validations_best_cell_and_the_evaluations_settings_are_always_fitted(monkeypatch, capsys):
    params = '{"raw": {"synthetic_size": "tiny"}, "evaluation": {"min_stocks": 10}}'
    monkeypatch.setattr(sys, "argv", ["lightgbm_grid.py", "--params", params, "--leaves", "3,7", "--min-data", "20"])
    lightgbm_grid.main()
    out = capsys.readouterr().out
    cells = re.findall(r"fold 0: (\d+) leaves, (\d+) rows a leaf: validation RankIC (-?[\d.]+)", out)
    assert [(n, m) for n, m, _ in cells] == [("3", "20"), ("7", "20"), ("15", "200")]  # the evaluation's 15 / 200 added
    best = max(cells, key=lambda c: float(c[2]))
    assert f"fold 0: the pick {best[0]} leaves, {best[1]} rows a leaf (validation {best[2]};" in out
    test = re.search(r"test RankIC \(1d\): the pick (-?[\d.]+), the evaluation's settings (-?[\d.]+); pick - evaluation's ([-+][\d.]+) \[.*\], (\d+) dates", out)
    assert test and int(test[4]) > 0
    assert abs(float(test[1]) - float(test[2]) - float(test[3])) < 2e-4
