"""Project hooks."""

from __future__ import annotations

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
