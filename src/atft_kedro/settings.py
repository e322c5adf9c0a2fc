"""Project settings (Kedro defaults, local env for runs, the credentials hook)."""

from atft_kedro.hooks import JQuantsCredentialsHook, OneLineErrorHook

HOOKS = (JQuantsCredentialsHook(), OneLineErrorHook())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
