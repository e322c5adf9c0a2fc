"""`kedro run` as a user runs it: all four pipelines on the tiny synthetic market, in a copy of the
project, then one training phase on its own, then the results notebook top to bottom."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.kedro_process import copy_project, kedro_run, run

ROOT = Path(__file__).resolve().parents[2]
TINY = ",".join(
    [
        "raw.synthetic_size=tiny",
        "graph.window=40",
        "graph.min_periods=25",
        "graph.k=6",
        "training.epochs=1",
        "training.max_train_dates=8",
        "training.min_stocks=10",
        "training.model.d_model=16",
        "training.model.gat_heads=2",
        "training.model.temporal_heads=2",
        "evaluation.min_stocks=10",
        "evaluation.lightgbm.early_stopping=20",  # as the in-process tests' TINY_EVALUATION
    ]
)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return copy_project(tmp_path_factory.mktemp("project"))


def _kedro(project: Path, *args: str, ok: bool = True, fresh: bool = False) -> subprocess.CompletedProcess:
    out = kedro_run(project, *args, fresh=fresh)
    assert (out.returncode == 0) == ok, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_bad_data_is_said_on_one_line_before_the_traceback(project, stocknet_dir, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(stocknet_dir, raw)
    quotes = pl.read_parquet(raw / "daily_quotes.parquet")
    quotes.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(float("nan")).otherwise(pl.col("Close")).alias("Close")
    ).write_parquet(raw / "daily_quotes.parquet")
    params = f"source=files,raw.files_dir={raw},raw.on_bad_rows=error"
    err = _kedro(project, "--nodes", "load_raw_market", "--params", params, ok=False).stderr
    line = next(line for line in err.splitlines() if line.startswith("Error in node load_raw_market: RawDataError:"))
    assert "daily_quotes: 1 bad row(s), first: NaN Close at row 5" in line and "Close = nan" in line
    assert err.index(line) < err.index("Traceback")


def test_a_pipeline_before_its_inputs_stops_with_what_to_run_first(tmp_path):
    fresh = copy_project(tmp_path)
    err = _kedro(fresh, "--pipelines", "training", "--params", TINY + ",phase=2", ok=False).stderr
    assert "Error: this run reads datasets that are not there yet (from data_engineering: data_fingerprint" in err
    assert "`kedro run --pipelines data_engineering,graph_construction`" in err and "Traceback" not in err
    assert not (fresh / "data").exists() or not any((fresh / "data").rglob("*.parquet"))  # no node ran


def test_a_training_value_its_config_refuses_stops_the_run_with_its_message_alone(tmp_path):
    """Kedro checks ``training`` itself (a config dataclass in the node's signature); its error is
    the command's one message, as the project's own parameter checks are (atft_kedro/context.py)."""
    fresh = copy_project(tmp_path)
    err = _kedro(fresh, "--params", TINY + ",training.lr=-1", ok=False).stderr
    assert "Error: Parameter validation failed:" in err and "training lr is the learning rate, >= 0 (0: the phase keeps its start), got -1" in err
    assert "Traceback" not in err and not (fresh / "data").exists()


def test_a_run_while_another_runs_in_the_project_stops_before_any_node(tmp_path):
    from atft_kedro.hooks import hold_project_lock

    fresh = copy_project(tmp_path)
    held = hold_project_lock(fresh / "data" / ".run.lock")  # this process runs in the project
    try:
        err = _kedro(fresh, "--nodes", "load_raw_market", "--params", TINY, ok=False).stderr
    finally:
        held.close()
    assert f"Error: another run is using this project's data (process {os.getpid()}, since " in err and "Traceback" not in err
    assert not any((fresh / "data").rglob("*.parquet"))  # no node ran
    with sqlite3.connect(fresh / "mlflow.db") as db:  # kedro-mlflow makes its store as the command starts ...
        assert db.execute("select count(*) from runs").fetchone() == (0,)  # ... and opened no run


def test_kedro_run_runs_all_four_pipelines(project):
    out = _kedro(project, "--params", TINY, fresh=True)  # a real `kedro` executable: warnings raised at import are its own
    text = out.stdout + out.stderr
    assert "WARNING" not in text, text[-3000:]  # a plain run greets nobody with warnings
    summary = out.stdout[out.stdout.rindex("Test RankIC:") :]  # the headline numbers at the end, and where the rest is
    assert "The model minus the best baseline on test" in summary and summary.rstrip().endswith("evaluation_report.md")
    epoch = [line for line in (project / "info.log").read_text().splitlines() if "phase 0 epoch 0: loss " in line]
    assert epoch and "val RankIC {'1d': " in epoch[-1]  # every record also in info.log, one line each (conf/logging.yml)
    assert any("node train_model: " in line and "peak memory" in line for line in (project / "info.log").read_text().splitlines())
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    assert set(metrics["horizons"]) == {"1d", "5d", "10d", "20d"}
    assert set(metrics["horizons"]["1d"]) == {"model", "momentum_20d", "reversal_1d", "ridge", "lightgbm", "oracle"}  # no blend by default
    assert set(metrics["neutral"]) == set(metrics["horizons"]) and set(metrics["neutral"]["20d"]) == set(metrics["horizons"]["20d"])
    for h in ("1d", "5d", "10d", "20d"):
        paired, ablation = metrics["paired"][h], metrics["graph_ablation"][h]
        assert paired["best_baseline"] in {"momentum_20d", "reversal_1d", "ridge", "lightgbm"} and paired["lag"] == int(h[:-1]) - 1
        model, best = metrics["horizons"][h]["model"]["rank_ic"], metrics["horizons"][h][paired["best_baseline"]]["rank_ic"]
        assert paired["ci95_low"] <= paired["mean"] <= paired["ci95_high"] and abs(paired["mean"] - (model - best)) < 1e-4
        assert ablation["with_graph"] == model and ablation["random_endpoints"] is not None
        pick, on_val = metrics["validation_pick"][h], {b: metrics["baselines"][b][h]["val_rank_ic"] for b in metrics["baselines"]}
        ranked = {b: -1.0 if v is None else v for b, v in on_val.items()}  # no scored validation date ranks last, as in the evaluation
        assert pick["baseline"] == max(ranked, key=ranked.get) and pick["val_rank_ic"] == on_val[pick["baseline"]]
        assert abs(pick["mean"] - (model - metrics["horizons"][h][pick["baseline"]]["rank_ic"])) < 1e-4
    assert metrics["baselines"]["lightgbm"]["1d"]["trees"] >= 1 and metrics["baselines"]["ridge"]["1d"]["alpha"] > 0
    for name in ("cumulative_returns", "rolling_ic", "quantile_returns", "rank_ic_by_horizon", "forecast_parts", "feature_importance", "training_history"):
        assert (project / f"data/08_reporting/{name}.png").stat().st_size > 10_000
    report = (project / "data/08_reporting/evaluation_report.md").read_text()
    assert "| model |" in report and "## The model against the best baseline" in report and "## What the graph is worth" in report
    assert "## The model against the baseline validation picks" in report
    for h, alike in metrics["forecast_correlation"].items():  # every other scorer against the model, a correlation
        assert set(alike) == set(metrics["horizons"][h]) - {"model"} and all(-1 <= v <= 1 for v in alike.values())
    assert "## How alike the forecasts are" in report
    predictions = pl.read_parquet(project / "data/07_model_output/predictions.parquet")
    for h, paths in metrics["forecast_parts"].items():  # phase 3: every path on; each adds the forecast's RankIC less its RankIC without it
        assert set(paths) <= {"network", "own", "neighbours"} and {"own", "neighbours"} <= set(paths)
        for p in paths.values():
            assert abs(p["adds"]["mean"] - (metrics["horizons"][h]["model"]["rank_ic"] - p["rank_ic_without"])) < 1e-4 and p["spread"] > 0
            assert p["validation"]["adds"]["dates"] > 0 and p["validation"]["rank_ic_alone"] != p["rank_ic_alone"]  # scored on validation's own dates
        total = sum(predictions[f"part_{path}_{h}"] for path in ("network", "own", "neighbours"))
        assert (total - predictions[f"pred_{h}"]).abs().max() < 1e-6
    assert "## What the forecast is made of" in report and "| 1d | neighbours |" in report and "adds on validation" in report
    known = predictions.group_by("Date").agg(pl.col(f"target_{h}").is_not_null().any() for h in ("1d", "5d", "10d", "20d")).sort("Date")
    for h in ("1d", "5d", "10d", "20d"):  # the book's periods: every h-th test date whose h-day return is known, the last h left out
        periods = int(known[f"target_{h}"][:: int(h[:-1])].sum())
        assert 0 < periods < len(known[:: int(h[:-1])]) and f"The model's long-short book: {periods} period" in report
    manifest = json.loads((project / "data/04_feature/feature_manifest.json").read_text())
    importance = metrics["feature_importance"]  # every stock-feature group, each moved on every validation date
    assert importance == json.loads((project / "data/08_reporting/feature_importance.json").read_text()) and importance["split"] == "val"
    stock = [m for m in manifest if not m["date_constant"]]
    assert set(importance["groups"]) == {m["group"] for m in stock} | {"all features"}
    for group, g in importance["groups"].items():
        assert g["features"] == (len(stock) if group == "all features" else sum(m["group"] == group for m in stock))
        for h in ("1d", "5d", "10d", "20d"):  # scored on the dates the validation forecast is scored on
            assert g[h]["worth"]["dates"] == metrics["forecast_parts"][h]["own"]["validation"]["adds"]["dates"] > 0
    assert sum(abs(g["1d"]["worth"]["mean"]) for g in importance["groups"].values()) > 0  # the trained model reads its inputs
    assert "## What the ranking rests on" in report
    validation = pl.read_parquet(project / "data/07_model_output/validation_predictions.parquet")
    splits = pl.read_parquet(project / "data/05_model_input/splits.parquet")
    assert set(validation["Date"]) == set(splits.filter(pl.col("split") == "val")["Date"])  # every validation date, by the catalog's model
    fingerprint = json.loads((project / "data/05_model_input/data_fingerprint.json").read_text())
    assert metrics["provenance"]["data"] == fingerprint and metrics["provenance"]["model"]["phase"] == 3
    assert f"trained on synthetic data `{fingerprint['id']}`" in report
    kept = metrics["provenance"]["model"]["starts"]["phase 2, neighbour skip"]  # carried from phase 2's checkpoint to phase 3's
    assert set(kept) == {"1d", "5d", "10d", "20d"} and all(name.startswith(("none", "the fit")) for name in kept.values())
    assert "Start of the neighbour skip (phase 2), chosen on validation: 1d " + kept["1d"] in report
    quality = json.loads((project / "data/08_reporting/graph_quality.json").read_text())
    assert set(quality) == {"train", "val", "test"} and 0 < quality["test"]["mate_recall"] < 1
    for phase in range(4):
        assert (project / f"data/06_models/checkpoints/phase{phase}/best.pt").exists()


def test_every_run_is_tracked_and_inference_ranks_tomorrow_from_the_catalogs_or_a_logged_model(project):
    """kedro-mlflow's local store sits in the project copy (sqlite:///mlflow.db): nothing is written
    outside it. The inference pipeline writes the ranking for the trading day after the last date,
    from the catalog's model, and the same ranking from the model an MLflow run logged."""
    outside = ROOT / "mlflow.db"
    before = outside.stat().st_mtime_ns if outside.exists() else None
    if not (project / "data/06_models/model.pt").exists():  # run on its own (-k): the whole run first
        _kedro(project, "--params", TINY)
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("atft_kedro").experiment_id
    logged = client.search_runs([experiment], filter_string="tags.mlflow.runName = '__default__'", order_by=["attributes.start_time DESC"])[0]
    run = {"id": logged.info.run_id, "rank_ic": logged.data.metrics["horizons.1d.model.rank_ic"], "window": logged.data.params["graph.window"],
           "files": [a.path for d in ("reporting", "model") for a in client.list_artifacts(logged.info.run_id, d)],
           "epochs": len(client.get_metric_history(logged.info.run_id, "phase0.val_rank_ic_1d"))}  # fmt: skip
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    assert run["rank_ic"] == metrics["horizons"]["1d"]["model"]["rank_ic"] and run["window"] == "40"
    assert {"reporting/metrics.json", "reporting/evaluation_report.md", "reporting/cumulative_returns.png", "model/model.pt"} <= set(run["files"])
    assert run["epochs"] == 1  # training.epochs=1: one point per phase and metric
    (project / "downloaded").mkdir()
    for plot in ("training_history", "cumulative_returns", "feature_importance"):  # each plot as the catalog wrote it, not drawn again
        logged_plot = Path(client.download_artifacts(run["id"], f"reporting/{plot}.png", str(project / "downloaded")))
        assert logged_plot.read_bytes() == (project / f"data/08_reporting/{plot}.png").read_bytes(), plot
    _kedro(project, "--pipelines", "inference", "--params", TINY)
    out = project / "data/07_model_output"
    (csv,) = out.glob("ranking_*.csv")
    as_of = csv.stem.removeprefix("ranking_")
    catalog_model = pl.read_parquet(out / f"ranking_{as_of}.parquet")
    assert pl.read_csv(csv).height == catalog_model.height > 0 and {"Code", "score_1d", "q05_20d", "rank_10d"} <= set(catalog_model.columns)
    assert (out / f"ranking_{as_of}.md").read_text().startswith(f"# Ranking for the trading day after {as_of}")
    _kedro(project, "--pipelines", "inference", "--params", f"{TINY},inference.mlflow_run_id={run['id']}")
    (logged_model,) = [pl.read_parquet(p) for p in out.glob("ranking_*.parquet")]
    assert logged_model.equals(catalog_model)
    assert (outside.stat().st_mtime_ns if outside.exists() else None) == before and (project / "mlflow.db").exists()


def test_the_states_of_a_finished_run_can_be_chosen_per_horizon(project, tmp_path, monkeypatch, capsys):
    """experiments/per_horizon_best.py --project: every phase's best and last checkpoint of a `kedro
    run` forecast validation and test beside the run's own predictions (the script stops unless the
    run's model is one of them and forecasts as the run did), and each horizon's choice is made."""
    if not (project / "data/06_models/model.pt").exists():  # run on its own (-k): the whole run first
        _kedro(project, "--params", TINY)
    monkeypatch.syspath_prepend(str(ROOT / "experiments"))
    import per_horizon_best

    monkeypatch.setattr(sys, "argv", ["per_horizon_best.py", "--project", str(project), "--out", str(tmp_path)])
    per_horizon_best.main()
    assert "### test, chosen on the whole of validation" in capsys.readouterr().out
    row = json.loads((tmp_path / "project_run.json").read_text())[0]
    assert {"p0e0", "p1e0", "p2e0", "p3e0"} <= set(row["states"]["tags"]) and row["states"]["final"].startswith("p3")
    switched = json.loads((tmp_path / "runs.json").read_text())[0]
    assert set(switched["chosen"]) == {"1d", "5d", "10d", "20d"}
    assert pl.read_parquet(switched["frame"]).height == pl.read_parquet(project / "data/07_model_output/predictions.parquet").height


def test_one_training_phase_from_the_cli(project):
    if not (project / "data/06_models/model.pt").exists():  # run on its own (-k): the whole run first
        _kedro(project, "--params", TINY)
    checkpoints = project / "data/06_models/checkpoints"
    before = {p: (checkpoints / f"phase{p}/last.pt").stat().st_mtime_ns for p in range(4)}
    out = _kedro(project, "--pipeline", "training", "--params", TINY + ",phase=2")  # the spelling Kedro 1.x deprecates
    assert "deprecated" not in out.stdout + out.stderr  # handed to Kedro as --pipelines (atft_kedro/kedro_init.py)
    after = {p: (checkpoints / f"phase{p}/last.pt").stat().st_mtime_ns for p in range(4)}
    assert [after[p] != before[p] for p in range(4)] == [False, False, True, False]
    # model.pt is now phase 2's: the phase-3 predictions on disk are not scored as if they were its
    err = _kedro(project, "--nodes", "evaluate", "--params", TINY, ok=False).stderr
    line = next((line for line in err.splitlines() if line.startswith("Error in node evaluate")), err[-3000:])
    assert "StaleArtifactError: the predictions were made by another model (phase 3 epoch" in line and "than the catalog's (phase 2 epoch" in line
    _kedro(project, "--pipelines", "evaluation", "--params", TINY + ",evaluation.importance_dates=0")  # the importance: test_kedro_run_...
    assert json.loads((project / "data/08_reporting/metrics.json").read_text())["provenance"]["model"]["phase"] == 2


def test_a_run_stopped_in_training_continues_where_it_stopped(project, tmp_path):
    """A whole run stopped in phase 2 (made here by marking phase 2's last checkpoint unfinished and
    removing phase 3's), then the same `kedro run` again: phases 0 and 1 are kept, not trained
    again, phase 2 resumes after its last epoch and phase 3 is trained."""
    import torch

    if not (project / "data/06_models/model.pt").exists():  # run on its own (-k): the whole run first
        _kedro(project, "--params", TINY)
    other = tmp_path / "stopped"
    shutil.copytree(project, other)
    (other / "info.log").unlink(missing_ok=True)
    checkpoints = other / "data/06_models/checkpoints"
    torch.save({**torch.load(checkpoints / "phase2/last.pt", weights_only=True), "finished": False}, checkpoints / "phase2/last.pt")
    shutil.rmtree(checkpoints / "phase3")
    before = {p: (checkpoints / f"phase{p}/last.pt").stat().st_mtime_ns for p in (0, 1)}
    _kedro(other, "--params", TINY + ",evaluation.importance_dates=0")  # an evaluation setting: training's phases are kept
    log = (other / "info.log").read_text()
    assert "continuing an interrupted run of these data and settings: phase 0, phase 1 finished before, kept" in log
    assert "phase 2: resuming after epoch 0" in log and "phase 3: starting from phase 2's best checkpoint" in log
    assert {p: (checkpoints / f"phase{p}/last.pt").stat().st_mtime_ns for p in (0, 1)} == before
    assert torch.load(checkpoints / "phase3/last.pt", weights_only=True)["finished"]


def test_results_notebook_runs_top_to_bottom(project):
    if not (project / "data/08_reporting/metrics.json").exists():  # run on its own (-k): the whole run first
        _kedro(project, "--params", TINY)
    nb = json.loads((project / "notebooks/results.ipynb").read_text())
    code = [c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    script = project / "notebooks" / "_run_notebook.py"
    script.write_text("\n\n".join(code))
    out = run([sys.executable, script.name], project / "notebooks", {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "share of days with positive RankIC" in out.stdout
    assert "least liquid" in out.stdout  # the liquidity thirds' table


def test_artifacts_of_other_data_stop_the_run_with_the_commands_that_rebuild_them(project, tmp_path):
    """After a whole run, data_engineering and graph_construction rebuilt on another market: the
    evaluation does not score the old model on the new data, and says what to rerun."""
    if not (project / "data/06_models/model.pt").exists():  # run on its own (-k): the whole run first
        _kedro(project, "--params", TINY)
    other = tmp_path / "other"
    shutil.copytree(project, other)
    params = TINY + ",raw.synthetic_seed=12"  # both rebuilt, then the evaluation, in one run (one start-up less)
    err = _kedro(other, "--pipelines", "data_engineering,graph_construction,evaluation", "--params", params, ok=False).stderr
    fingerprint = [json.loads((root / "data/05_model_input/data_fingerprint.json").read_text())["id"] for root in (project, other)]
    assert fingerprint[0] != fingerprint[1]  # the new market's data were made first
    line = next((line for line in err.splitlines() if line.startswith("Error in node predict_test")), err[-3000:])
    assert "StaleArtifactError: training_arrays, model were built from other data" in line
    assert "Rebuild: kedro run --pipelines training" in line
