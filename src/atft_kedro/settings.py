"""Project settings (Kedro defaults, local env for runs)."""

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
