"""The command line as Kedro gets it: ``kedro run --pipeline NAME`` (the project's documented way to
train one phase, deprecated by Kedro 1.x) reaches Kedro as ``--pipelines NAME``."""

import sys

import pytest

from atft_kedro.kedro_init import at_kedro_start, pipelines_spelling


@pytest.mark.parametrize("options, spelled", [
    (["--pipeline", "training", "--params", "phase=2"], ["--pipelines", "training", "--params", "phase=2"]),
    (["-p", "training"], ["--pipelines", "training"]),
    (["--params", "phase=2", "--pipeline=evaluation"], ["--params", "phase=2", "--pipelines=evaluation"]),
    (["--pipelines", "training", "--params", "phase=2"], ["--pipelines", "training", "--params", "phase=2"]),
    (["--params", "raw.files_dir=--pipeline", "--nodes", "evaluate"], ["--params", "raw.files_dir=--pipeline", "--nodes", "evaluate"]),
])  # fmt: skip
def test_the_old_single_pipeline_option_is_given_to_kedro_as_pipelines(options, spelled):
    assert pipelines_spelling(options) == spelled


def test_both_spellings_in_one_command_are_a_clear_error():
    with pytest.raises(SystemExit, match="--pipeline and --pipelines cannot be used together: name every pipeline in one --pipelines"):
        pipelines_spelling(["--pipeline", "a", "--pipelines", "b"])


def test_only_a_kedro_run_has_its_command_line_respelled(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["kedro", "run", "--pipeline", "training"])
    at_kedro_start()
    assert sys.argv == ["kedro", "run", "--pipelines", "training"]
    monkeypatch.setattr(sys, "argv", ["kedro", "viz", "run", "-p", "8080"])  # another command's -p is its own
    at_kedro_start()
    assert sys.argv == ["kedro", "viz", "run", "-p", "8080"]
