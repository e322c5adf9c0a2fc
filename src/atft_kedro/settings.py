"""Project settings (Kedro defaults, local env for runs, the credentials hook)."""

from atft_kedro.hooks import JQuantsCredentialsHook

HOOKS = (JQuantsCredentialsHook(),)

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
