"""Project hooks."""

from __future__ import annotations

import click
from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset

from atft_kedro.data.jquants import JQuantsCredentials


class JQuantsCredentialsHook:
    """Hands the ``jquants`` entry of conf/local/credentials.yml (or the JQUANTS_* environment
    variables) to the data_engineering pipeline as the in-memory dataset ``jquants_credentials``.
    A catalog entry with ``credentials: jquants`` would make every run fail when that entry is
    absent, and most runs (synthetic, files) need none. The object's repr hides the secrets, so
    Kedro's logs never show them."""

    @hook_impl
    def after_catalog_created(self, catalog, conf_creds, **kwargs) -> None:
        credentials = JQuantsCredentials.from_sources((conf_creds or {}).get("jquants"))
        catalog["jquants_credentials"] = MemoryDataset(credentials, copy_mode="assign")


class OneLineErrorHook:
    """When a node stops on one of the project's own errors (bad raw data, a missing checkpoint,
    J-Quants), says what is wrong on one line of stderr before Kedro's traceback: the message
    already names what to fix, and the traceback is for the code, not for the data. (Not through
    logging: the rich handler wraps long lines at the console's width.)"""

    @hook_impl
    def on_node_error(self, error: Exception, node, **kwargs) -> None:
        if type(error).__module__.startswith("atft_kedro."):
            click.secho(f"Error in node {node.name}: {one_line(error)}", fg="red", bold=True, err=True)


def one_line(error: Exception) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"
