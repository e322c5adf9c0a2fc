"""The project's hooks: a run of part of the project stops before any node when what it reads from
an earlier pipeline is not there, and says what to run; a run with a parameter nothing reads (a
misspelt key) stops before any node and names it."""

import re
from pathlib import Path

import click
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro_datasets.json import JSONDataset

from atft_kedro.hooks import MissingInputsError, MissingInputsHook, ParametersError, ParametersHook, missing_inputs, project_pipelines
from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory
from atft_kedro.pipelines.typed import parameters_read, unknown_parameters


def _catalog(tmp_path, present: set[str], names) -> DataCatalog:
    """Each of ``names`` in memory (there) if in ``present``, else a JSON file that does not exist."""
    return DataCatalog({n: MemoryDataset(0) if n in present else JSONDataset(filepath=str(tmp_path / f"{n}.json")) for n in names})


def test_a_pipeline_run_alone_names_what_is_missing_and_the_pipelines_that_make_it(tmp_path):
    pipelines = project_pipelines()
    training = pipelines["training"]
    made_before = {"data_fingerprint", "feature_manifest", "graphs", "market_context", "market_features", "model_input", "splits"}
    assert made_before <= training.inputs()
    catalog = _catalog(tmp_path, set(), training.inputs() - {"params:training", "params:phase", "params:normalisation"})
    message = missing_inputs(training, catalog, pipelines)
    assert message.startswith("this run reads datasets that are not there yet (from data_engineering: data_fingerprint, feature_manifest, "
                              "market_context, market_features, model_input, splits; from graph_construction: graphs)")  # fmt: skip
    assert "`kedro run --pipelines data_engineering,graph_construction`" in message
    assert "checkpoints" not in message  # no node writes the store: the training node says what it misses there

    catalog = _catalog(tmp_path, made_before, training.inputs())
    assert missing_inputs(training, catalog, pipelines) is None
    evaluation = pipelines["evaluation"]
    catalog = _catalog(tmp_path, evaluation.inputs() - {"model"}, evaluation.inputs())
    assert missing_inputs(evaluation, catalog, pipelines).endswith(
        "(from training: model). Make them first with `kedro run --pipelines training` (or run everything with `kedro run`), then repeat this command.")


def test_the_whole_run_needs_nothing_made_before_it(tmp_path):
    pipelines = project_pipelines()
    whole = sum(pipelines.values(), Pipeline([]))  # inference too: what it reads, the others make
    assert missing_inputs(whole, _catalog(tmp_path, set(), whole.inputs()), pipelines) is None


def test_the_hook_stops_the_run_as_a_command_line_error_before_other_hooks(tmp_path):
    training = project_pipelines()["training"]
    with pytest.raises(MissingInputsError, match="from graph_construction: graphs") as raised:
        MissingInputsHook().before_pipeline_run(pipeline=training, catalog=_catalog(tmp_path, set(), training.inputs()), run_params={})
    assert isinstance(raised.value, click.ClickException)  # the command line prints its message, no traceback
    assert MissingInputsHook.before_pipeline_run.kedro_impl["tryfirst"]  # before kedro-mlflow opens a run


def test_every_parameter_of_conf_base_is_read_and_a_misspelt_one_is_named_with_its_neighbours():
    read = parameters_read(project_pipelines().values())
    assert read == {"source", "phase", "raw", "splits", "normalisation", "evaluation", "graph", "inference", "training", "forecast"}
    assert unknown_parameters(project_parameters(), read) == []  # a key added to conf/base must be read, or named where it is
    fine = {"training": {"epochs": {"0": 8}, "model": {"d_model": 32, "lead_weights": "lead"}}, "normalisation": {"rank_groups": ["range"]},
            "raw": {"synthetic_overrides": {"short_term_momentum": 0.15}, "jquants": {"plan": "light"}}}  # fmt: skip
    assert unknown_parameters(project_parameters(fine), read) == []
    misspelt = {"sorce": "files", "evaluation": {"blnd": True, "lightgbm": {"num_leave": 7}}, "normalisation": {"rank_group": ["range"]},
                "training": {"epoch": 3, "model": {"d_modl": 32}, "loss_weights": {"rank": 1.0}}, "inference": {"asof": "2020-01-06"},
                "raw": {"jquants": {"plan": "light", "start": "2021-01-04"}, "synthetic_overrides": {"n_stock": 10}},
                "forecast": {"one_day_shares": 0.3}}  # fmt: skip
    found = {f.split(" ")[0]: f for f in unknown_parameters(project_parameters(misspelt), read)}
    assert set(found) == {"normalisation.rank_group", "evaluation.blnd", "evaluation.lightgbm.num_leave", "inference.asof", "training.epoch", "sorce",
                          "forecast.one_day_shares",
                          "training.model.d_modl", "training.loss_weights.rank", "raw.jquants.start", "raw.synthetic_overrides.n_stock"}  # fmt: skip
    assert found["evaluation.blnd"].startswith("evaluation.blnd (the keys of evaluation: blend, blend_weights,")
    assert found["sorce"].startswith("sorce (the keys at the top level: evaluation,") and "epochs" in found["training.epoch"]


def test_a_misspelt_parameter_stops_a_run_before_any_node():
    catalog = DataCatalog({"parameters": MemoryDataset(project_parameters({"evaluation": {"blnd": True}}))})
    with pytest.raises(ParametersError, match=r"misspelt\?\): evaluation.blnd \(the keys of evaluation") as raised:
        ParametersHook().before_pipeline_run(catalog=catalog, pipeline=Pipeline([]), run_params={})
    assert isinstance(raised.value, click.ClickException) and ParametersHook.before_pipeline_run.kedro_impl["tryfirst"]
    ParametersHook().before_pipeline_run(catalog=DataCatalog({"parameters": MemoryDataset(project_parameters())}), pipeline=Pipeline([]), run_params={})
    with pytest.raises(ValueError, match="normalisation.clp"):  # the in-memory runs of the tests and research scripts too
        run_in_memory(["data_engineering"], project_parameters({"normalisation": {"clp": 3.0}}))


@pytest.mark.parametrize(("evaluation", "said"), [({"quantile": 0.7}, r"quantile is the fraction .* in \(0, 0.5\], got 0.7"),
                                               ({"hold_quantile": 0.1}, r"hold_quantile .* in \[quantile \(0.2\), 0.5\], or null .* got 0.1"),
                                               ({"min_stocks": 1}, r"min_stocks .* a whole number >= 2, got 1"),
                                               ({"cost_bp": -5}, r"cost_bp .* >= 0, got -5"),
                                               ({"blend": True, "blend_weights": [0, 2]}, r"blend_weights .* each in \[0, 1\], got \[0.0, 2.0\]"),
                                               ({"lightgbm": {"bag": 0}}, r"lightgbm.bag is a whole number >= 1, got 0"),
                                               ({"ridge_alphas": [0, 10]}, r"ridge_alphas .* each > 0, got \[0.0, 10.0\]"),
                                               ({"importance_dates": -3}, r"importance_dates is how many .* got -3")])  # fmt: skip
def test_an_evaluation_value_its_config_refuses_stops_the_run_before_training(evaluation, said):
    catalog = DataCatalog({"parameters": MemoryDataset(project_parameters({"evaluation": evaluation}))})
    with pytest.raises(ParametersError, match="^evaluation: " + said):  # not after training, where the evaluation node would meet it
        ParametersHook().before_pipeline_run(catalog=catalog, pipeline=Pipeline([]), run_params={})


@pytest.mark.parametrize("share", [1.0, -0.1, "half", True])
def test_a_one_day_share_outside_zero_to_one_stops_the_run(share):
    catalog = DataCatalog({"parameters": MemoryDataset(project_parameters({"forecast": {"one_day_share": share}}))})
    with pytest.raises(ParametersError, match=r"^forecast: one_day_share is the 1-day forecast's share of each long forecast, in \[0, 1\), got "):
        ParametersHook().before_pipeline_run(catalog=catalog, pipeline=Pipeline([]), run_params={})


def test_a_clip_that_is_not_a_positive_number_stops_the_run():
    catalog = DataCatalog({"parameters": MemoryDataset(project_parameters({"normalisation": {"clip": 0}}))})
    with pytest.raises(ParametersError, match=r"^normalisation: clip is the robust z-score .* > 0, got 0$"):
        ParametersHook().before_pipeline_run(catalog=catalog, pipeline=Pipeline([]), run_params={})


def test_a_model_size_the_model_cannot_take_stops_the_run():
    catalog = DataCatalog({"parameters": MemoryDataset(project_parameters({"training": {"model": {"d_model": 30}}}))})
    with pytest.raises(ParametersError, match=r"^training.model: d_model=30 must be divisible by temporal_heads=4$"):
        ParametersHook().before_pipeline_run(catalog=catalog, pipeline=Pipeline([]), run_params={})


@pytest.mark.parametrize(("params", "said"), [({"training": {"model": {"dropout": 1.5}}}, r"^training.model: dropout is a probability in \[0, 1\), got 1.5$"),
                                             ({"training": {"model": {"gat_layers": 0}}}, r"^training.model: gat_layers is a size, a whole number >= 1, got 0$"),
                                             ({"training": {"model": {"linear_skip": [3]}}}, r"^training.model: linear_skip has unknown horizons \[3\]"),
                                             ({"training": {"model": {"selection_gates": "relu"}}}, r"^training.model: variable selection gates must be"),
                                             ({"training": {"model": {"lead_bands": [10, 5]}}}, r"^training.model: lead_bands \(10, 5\) must be slots in increasing"),
                                             ({"phase": 7}, r"^phase must be one of \[0, 1, 2, 3\] or 'all', got 7$"),
                                             ({"normalisation": {"rank_groups": ["foo"]}}, r"^normalisation: rank_groups is a list of stock feature groups \(.*moving_average, oscillator, range, returns.*\), e.g. \[range\]; got \['foo'\]$"),
                                             ({"normalisation": {"rank_groups": "range"}}, r"^normalisation: rank_groups is a list of stock feature groups .*; got 'range'$"),
                                             ({"inference": {"top": "abc"}}, r"^inference.top is how many names the summary shows at the top and at the bottom, a whole number >= 1; got 'abc'$"),
                                             ({"inference": {"top": 0}}, r"^inference.top is how many names .* got 0$"),
                                             ({"inference": {"as_of": "2020-13-45"}}, r"^inference.as_of must be a date \(YYYY-MM-DD\), or null for the data's last date; got '2020-13-45'$"),
                                             ({"source": "jquants", "raw": {"jquants": {"plan": "gold"}}}, r"^raw.jquants.plan must be one of \['free', 'light', 'standard', 'premium'\], got 'gold'$"),
                                             ({"source": "jquants", "raw": {"jquants": {"start_date": "abc"}}}, r"^raw.jquants.start_date must be a date \(YYYY-MM-DD\), got 'abc'$"),
                                             ({"source": "jquant"}, r"^source is where the raw tables come from, one of synthetic, files, jquants; got 'jquant'$"),
                                             ({"raw": {"synthetic_size": "huge"}}, r"^raw: unknown synthetic size 'huge'; choose one of \['full', 'small', 'tiny'\]$"),
                                             ({"raw": {"synthetic_market": "leaders"}}, r"^raw: unknown synthetic market 'leaders'; choose one of"),
                                             ({"raw": {"synthetic_seed": "abc"}}, r"^raw: synthetic seed is a whole number, got 'abc'$"),
                                             ({"raw": {"synthetic_overrides": {"lead_lag": "abc"}}}, r"^raw: synthetic lead_lag is a number, got 'abc'$"),
                                             ({"raw": {"synthetic_overrides": {"n_stocks": 10.5}}}, r"^raw: synthetic n_stocks is a whole number, got 10.5$"),
                                             ({"raw": {"synthetic_seed": -1}}, r"^raw: synthetic seed is a whole number >= 0, got -1$"),
                                             ({"raw": {"on_bad_rows": "skip"}}, r"^raw.on_bad_rows is 'quarantine' \(set bad rows aside\) or 'error' \(stop at the first\), got 'skip'$")])  # fmt: skip
def test_a_value_a_run_would_meet_late_stops_it_before_any_node(params, said):
    """Met otherwise in the first node (a source, the market, J-Quants' settings), after the features
    are built (rank groups), where inference ranks, or when the first phase builds the model."""
    catalog = DataCatalog({"parameters": MemoryDataset(project_parameters(params))})
    with pytest.raises(ParametersError, match=said):
        ParametersHook().before_pipeline_run(catalog=catalog, pipeline=Pipeline([]), run_params={})


def test_a_model_field_the_run_sets_itself_is_not_taken_as_a_parameter():
    """``n_features`` and the rest come from the data and the phase: given as parameters they
    crashed the first phase on a duplicate keyword (or were overwritten without a word)."""
    read = parameters_read(project_pipelines().values())
    model = {"n_features": 5, "use_fan": False, "gat_backend": "torch", "d_model": 32}
    found = unknown_parameters(project_parameters({"training": {"model": model}}), read)
    assert found == ["training.model.n_features (set by the run from the feature manifest, not a parameter)",
                     "training.model.use_fan (set by the run from the phase, not a parameter)",
                     "training.model.gat_backend (set by the run from training.mode, not a parameter)"]  # fmt: skip


def test_the_check_reads_the_groups_kedro_has_already_made_config_dataclasses():
    """During a kedro run the catalog's ``parameters`` hold the annotated groups as their configs
    (training as a TrainConfig), whose nested dicts are still checked."""
    from atft_kedro.features.splits import SplitConfig
    from atft_kedro.training.config import TrainConfig

    def run_with(training: dict) -> None:
        params = project_parameters({"training": training})
        params = {**params, "training": TrainConfig(**params["training"]), "splits": SplitConfig(**params["splits"])}
        ParametersHook().before_pipeline_run(catalog=DataCatalog({"parameters": MemoryDataset(params)}), pipeline=Pipeline([]), run_params={})

    run_with({})
    with pytest.raises(ParametersError, match=r"training.model.d_modl \(the keys of training.model: "):
        run_with({"model": {"d_modl": 32}})
    with pytest.raises(ParametersError, match=r"^training.model: d_model=30 must be divisible"):
        run_with({"model": {"d_model": 30}})


def test_the_cost_hook_logs_each_nodes_time_and_its_own_peak_memory(caplog, tmp_path):
    import logging
    import mmap
    import time
    from types import SimpleNamespace

    import numpy as np

    from atft_kedro.hooks import NodeCostHook, memory

    if memory() is None:
        pytest.skip("no /proc/self/status here: the hook logs times only")
    hook = NodeCostHook(step=1e8, every=0.05, code=Path(__file__).parent)  # this file's frames count as the project's code

    def touch_and_wait(block):
        np.frombuffer(block, np.uint8)[::4096] = 1  # every page touched: 400 MB resident, the process's own
        time.sleep(0.5)  # the watcher samples

    big, mapped, small = SimpleNamespace(name="big"), SimpleNamespace(name="mapped"), SimpleNamespace(name="small")
    np.ones(300_000_000, np.uint8).tofile(tmp_path / "pages.bin")
    with caplog.at_level(logging.INFO, logger="atft_kedro.hooks"):
        hook.before_pipeline_run()
        hook.before_node_run(node=big)
        block = mmap.mmap(-1, 400_000_000)  # its own mapping, given back on close whatever malloc's settings
        touch_and_wait(block)
        hook.after_node_run(node=big)
        block.close()
        hook.before_node_run(node=mapped)
        pages = np.memmap(tmp_path / "pages.bin", np.uint8, mode="r")
        assert int(pages[::4096].sum()) == len(range(0, 300_000_000, 4096))  # every page read: 300 MB resident, a file's
        time.sleep(0.5)
        hook.after_node_run(node=mapped)
        del pages
        hook.before_node_run(node=small)
        hook.after_node_run(node=small)
        hook.after_pipeline_run()
    costs = {c.name: c for c in hook._costs}
    assert [m for m in caplog.messages if m.startswith("node big: ") and "peak memory" in m and "of it the process's own" in m]
    assert [m for m in caplog.messages if m.startswith("node small: ") and "peak memory about" in m]  # below the run's high: sampled
    assert [m for m in caplog.messages if m.startswith("memory: node big passed ")]  # said while the node ran, at each 0.1 GB passed
    assert caplog.messages[-1].startswith("where the run's time went, per node: ")
    assert costs["big"].peak - costs["small"].peak > 3e8  # each node's own peak: the block was the big node's alone
    assert costs["big"].anon - costs["small"].anon > 3e8  # and its own memory
    assert re.fullmatch(r"test_hooks\.py:\d+ touch_and_wait < test_hooks\.py:\d+ test_the_cost_hook\w+", costs["big"].where)  # taken there
    assert f"its own highest at {costs['big'].where})" in next(m for m in caplog.messages if m.startswith("node big: "))
    assert [m for m in caplog.messages if m.startswith("memory: node big passed ") and ", at test_hooks.py:" in m]
    assert costs["mapped"].peak - costs["small"].peak > 2e8  # the file's pages are resident ...
    assert costs["mapped"].anon - costs["small"].anon < 1e8  # ... and not the process's own
    assert hook._watch is None  # no watcher left behind


def test_an_artifact_that_cannot_be_read_is_named_with_the_command_that_writes_it_again(tmp_path, capsys):
    """A file a pipeline wrote, damaged since (a run of an older version, a disk, an edit), stops the
    run in Kedro's runner before any node: one line says which file, why and what to run."""
    import polars as pl
    from kedro.io import DatasetError

    from atft_kedro.datasets import AtomicPolarsDataset
    from atft_kedro.hooks import OneLineErrorHook, unreadable_artifact

    path = tmp_path / "model_input.parquet"
    pl.DataFrame({"x": list(range(1000))}).write_parquet(path)
    path.write_bytes(path.read_bytes()[:300])
    catalog = DataCatalog({"model_input": AtomicPolarsDataset(filepath=str(path), file_format="parquet"), "other": MemoryDataset(0)})
    with pytest.raises(DatasetError) as raised:
        catalog.load("model_input")
    message = unreadable_artifact(raised.value, catalog, project_pipelines())
    assert message.startswith(f"cannot read model_input ({path}): ")
    assert "parquet" in message.split(": ", 1)[1].split(". data_engineering")[0].lower()  # what the reader said
    assert message.endswith("data_engineering writes it: `kedro run --pipelines data_engineering` writes it again "
                            "(or run everything with `kedro run`), then repeat this command.")  # fmt: skip
    OneLineErrorHook().on_pipeline_error(error=raised.value, catalog=catalog)
    assert capsys.readouterr().err.strip() == f"Error: {message}"
    # any other error, or a dataset no pipeline writes, is Kedro's to report
    assert unreadable_artifact(ValueError("model_input: Failed while loading data from dataset"), catalog, project_pipelines()) is None
    assert unreadable_artifact(DatasetError("raw_files: Failed while loading data from dataset X"), catalog, project_pipelines()) is None


HOLD_THE_LOCK = """
import sys, time
from pathlib import Path
from atft_kedro.hooks import hold_project_lock
held = hold_project_lock(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_run_in_the_project_stops_while_the_first_runs_and_goes_once_it_is_killed(tmp_path):
    import signal
    import subprocess
    import sys

    from atft_kedro.hooks import OneRunAtATimeHook, ProjectBusyError

    first = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(tmp_path / "data" / ".run.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        second = OneRunAtATimeHook()
        with pytest.raises(ProjectBusyError, match=rf"another run is using this project's data \(process {first.pid}, since .*: -c .*\)"):
            second.before_pipeline_run(run_params={"project_path": str(tmp_path)})
    finally:
        first.send_signal(signal.SIGKILL)  # no cleanup: the system lets go of the lock
        first.wait()
    second.before_pipeline_run(run_params={"project_path": str(tmp_path)})
    with pytest.raises(ProjectBusyError):  # held now by this run, until it ends ...
        OneRunAtATimeHook().before_pipeline_run(run_params={"project_path": str(tmp_path)})
    second.on_pipeline_error()  # ... with an error, say
    third = OneRunAtATimeHook()
    third.before_pipeline_run(run_params={"project_path": str(tmp_path)})
    third.after_pipeline_run()
