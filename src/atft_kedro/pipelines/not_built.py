"""A registered pipeline whose nodes do not exist yet says so instead of pretending to run."""

from kedro.pipeline import Node, Pipeline

NOT_BUILT = "not_built"


def not_built_pipeline(name: str, what: str, inputs: str) -> Pipeline:
    """One node (Kedro nodes need an input) that fails with a clear message."""

    def report_not_built(*_) -> None:
        raise NotImplementedError(
            f"The {name} pipeline is not built yet ({what}). `kedro run` runs the pipelines that are; "
            "see the README's status table."
        )

    report_not_built.__name__ = f"report_{name}_not_built"
    return Pipeline([Node(report_not_built, inputs, None, name=f"{name}_not_built", tags=[NOT_BUILT])])
