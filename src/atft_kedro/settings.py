"""Project settings (Kedro defaults, local env for runs, the project's hooks and context)."""

import warnings

from atft_kedro.context import ProjectContext
from atft_kedro.hooks import (DistributedRanksHook, JQuantsCredentialsHook, MissingInputsHook, NodeCostHook, OneLineErrorHook, OneRunAtATimeHook,
                              SummaryHook, TrackingHook, ParametersHook, torchrun_rank)  # fmt: skip


def quiet_kedro_deprecations() -> None:
    """Kedro 1.7's config loader calls an OmegaConf API that OmegaConf now marks deprecated; the
    warning is about Kedro's code, not the project's, and would greet every run."""
    warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning)


quiet_kedro_deprecations()

# before_pipeline_run: the tryfirst hooks run last registered first, so the parameter and input checks before the lock
HOOKS = (JQuantsCredentialsHook(), OneRunAtATimeHook(), MissingInputsHook(), ParametersHook(), OneLineErrorHook(), TrackingHook(), SummaryHook(), NodeCostHook(), DistributedRanksHook())

# under torchrun, rank 0 alone tracks the run in MLflow
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-mlflow",) if torchrun_rank() > 0 else ()

CONTEXT_CLASS = ProjectContext  # a parameter value a config refuses: its message, not a traceback

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
}
