"""Run by the Kedro CLI at start-up, before it loads any plugin's commands (the ``kedro.init``
entry point in pyproject.toml).

kedro-mlflow's commands import its pipeline model, a subclass of MLflow's ``PythonModel`` whose
``predict`` has no type hints; MLflow 3 warns about that when the class is defined, so every
``kedro`` command would print it before any project code runs. It is about that plugin's class,
not about anything a user of this project can change. A ``warnings`` filter cannot drop it (MLflow
emits it under its own "once" filter), and settings.py is read too late; Kedro's logging carries
Python warnings on the ``py.warnings`` logger, where this filter drops that one message, and only it.
"""

import logging

MESSAGE = "Add type hints to the `predict` method"


def _not_the_plugins_type_hint_warning(record: logging.LogRecord) -> bool:
    return MESSAGE not in record.getMessage()


def quiet_plugin_warnings() -> None:
    logging.getLogger("py.warnings").addFilter(_not_the_plugins_type_hint_warning)
