"""Run by the Kedro CLI at start-up, before it loads any plugin's commands or reads its command line
(the ``kedro.init`` entry point in pyproject.toml), and by ``python -m atft_kedro``.

Two things about how a command reaches Kedro, neither about what it runs:

- kedro-mlflow's commands import its pipeline model, a subclass of MLflow's ``PythonModel`` whose
  ``predict`` has no type hints; MLflow 3 warns about that when the class is defined, so every
  ``kedro`` command would print it before any project code runs. It is about that plugin's class,
  not about anything a user of this project can change. A ``warnings`` filter cannot drop it (MLflow
  emits it under its own "once" filter), and settings.py is read too late; Kedro's logging carries
  Python warnings on the ``py.warnings`` logger, where this filter drops that one message, and only it.
- ``kedro run --pipeline training --params phase=2`` is how this project trains one phase. Kedro
  1.x deprecates ``--pipeline`` (``-p``) for ``--pipelines``, warns at every such run and will
  remove it; ``--pipelines NAME`` selects the same one pipeline. The command line is handed to Kedro
  in that spelling, so the documented command runs without the warning and keeps running after
  Kedro drops the old option.
"""

import logging
import sys

MESSAGE = "Add type hints to the `predict` method"
OLD_SPELLINGS = ("--pipeline", "-p")


def _not_the_plugins_type_hint_warning(record: logging.LogRecord) -> bool:
    return MESSAGE not in record.getMessage()


def quiet_plugin_warnings() -> None:
    logging.getLogger("py.warnings").addFilter(_not_the_plugins_type_hint_warning)


def pipelines_spelling(options: list[str]) -> list[str]:
    """A run's ``options`` with ``--pipeline NAME`` (``-p NAME``, ``--pipeline=NAME``) written
    ``--pipelines NAME``; both spellings in one command stop it with a clear error (Kedro's own
    error for that prints only "NoneType: None")."""
    old = [o for o in options if o in OLD_SPELLINGS or o.startswith("--pipeline=")]
    if old and any(o == "--pipelines" or o.startswith("--pipelines=") for o in options):
        raise SystemExit(f"Error: {old[0]} and --pipelines cannot be used together: name every pipeline in one --pipelines (e.g. --pipelines a,b)")
    return ["--pipelines" if o in OLD_SPELLINGS else "--pipelines=" + o.split("=", 1)[1] if o.startswith("--pipeline=") else o
            for o in options]  # fmt: skip


def at_kedro_start() -> None:
    """The ``kedro.init`` hook: the plugin's warning filtered, and a ``kedro run``'s command line in
    today's spelling (``sys.argv``, which Kedro's CLI reads after this hook)."""
    quiet_plugin_warnings()
    if sys.argv[1:2] == ["run"]:
        sys.argv[2:] = pipelines_spelling(sys.argv[2:])
