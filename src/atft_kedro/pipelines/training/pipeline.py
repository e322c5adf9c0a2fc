from kedro.pipeline import Pipeline

from atft_kedro.pipelines.not_built import not_built_pipeline


def create_pipeline(**kwargs) -> Pipeline:
    return not_built_pipeline("training", "phases 0-3, checkpoints and resume", "params:phase")
