"""Two Optuna workers join one study on the tiny market, every trial an MLflow run nested under the
study's; the best trial becomes a parameters file. Parameters a run would refuse stop the command
before the study opens."""

import json
import re
import sys

import mlflow
import optuna
import pytest
import yaml

from atft_kedro import tuning
from tests.kedro_process import Command

TINY = {"raw": {"synthetic_size": "tiny", "synthetic_seed": 11}, "graph": {"window": 40, "min_periods": 25},
        "training": {"epochs": 1, "max_train_dates": 4, "min_stocks": 10, "model": {"temporal_heads": 2, "gat_heads": 2}}}  # fmt: skip


def test_two_workers_share_one_study_and_the_best_trial_is_a_parameters_file(tmp_path):
    storage, tracking = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "atft_kedro.tuning", "--study", "tiny", "--storage", storage, "--trials", "1",
           "--params", json.dumps(TINY), "--mlflow", tracking]  # fmt: skip
    optuna.create_study(study_name="tiny", storage=storage, direction="maximize")  # both workers join it
    workers = [Command(cmd, tmp_path) for _ in range(2)]  # side by side, each a process of its own
    for w in workers:
        done = w.wait(timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert len(study.trials) == 2 and sorted(t.number for t in study.trials) == [0, 1]
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) == 2  # two different draws
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(-1 <= t.value <= 1 for t in done)
    runs = mlflow.MlflowClient(tracking).search_runs([mlflow.MlflowClient(tracking).get_experiment_by_name("atft_kedro").experiment_id])
    parents = [r for r in runs if r.data.tags.get("optuna.study") == "tiny"]
    assert len(parents) == 1 and parents[0].info.run_id == study.user_attrs["mlflow_run_id"]
    trials = {int(r.data.tags["number"]): r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert sorted(trials) == [0, 1]
    for t in study.trials:
        run = trials[t.number]
        assert run.data.tags["state"] == t.state.name and float(run.data.params["lr"]) == t.params["lr"]
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert run.data.metrics["val_rank_ic_1d"] == t.value and "first_seed.val_metric" in run.data.metrics
    best = tmp_path / "conf/local/parameters_tuned.yml"
    tuning.main(["--study", "tiny", "--storage", storage, "--params", json.dumps(TINY), "--best", str(best)])  # in this process: no second start-up
    written = yaml.safe_load(best.read_text())
    assert written["training"]["lr"] == study.best_params["lr"] and written["graph"]["k"] == study.best_params["graph_k"]
    assert written["training"]["model"]["d_model"] == study.best_params["d_model"] and written["training"]["epochs"] == 1


@pytest.mark.parametrize(("params", "said"), [('{"raw": {"synthetic_size": "tiny"', r"--params is not JSON \(Expecting ',' delimiter"),
                                             ('{"training": {"lr": -1}}', r"--params: Parameter validation failed:\n- Parameter 'training'.*training lr is the learning rate"),
                                             ('{"raw": {"synthetic_size": "huge"}}', r"--params: raw: unknown synthetic size 'huge'")])  # fmt: skip
def test_parameters_a_run_would_refuse_are_a_usage_error_before_the_study_opens(tmp_path, capsys, params, said):
    storage = tmp_path / "study.db"
    with pytest.raises(SystemExit) as stopped:
        tuning.main(["--storage", f"sqlite:///{storage}", "--trials", "1", "--mlflow", "none", "--params", params])
    assert stopped.value.code == 2 and re.search(said, capsys.readouterr().err) and not storage.exists()


def test_with_walk_forward_splits_the_study_tunes_on_the_last_fold():
    """Fold 0's dates (what it read before) are the oldest and fewest; the last fold's model is the one a run keeps."""
    from atft_kedro.features.splits import split_dates
    from atft_kedro.pipelines.in_memory import project_parameters
    from atft_kedro.training.data import fold_arrays

    objective = tuning.Objective(project_parameters({**TINY, "splits": {"n_folds": 2}}), seeds=[0])
    splits, arrays = objective.data["splits"], objective.arrays
    assert objective.fold == 1
    for name, idx in (("train", objective.train_idx), ("val", objective.val_idx)):
        assert list(arrays.dates[idx]) == list(split_dates(splits, name, 1).to_numpy().astype("datetime64[D]"))
    refitted = fold_arrays(arrays, splits, 1, objective.data["market_features"], objective.base["normalisation"])
    assert (arrays.market == refitted.market).all()  # the market context scaled on fold 1's training dates

