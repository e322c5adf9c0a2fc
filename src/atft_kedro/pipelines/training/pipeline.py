from kedro.pipeline import Node, Pipeline

from . import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.build_training_arrays,
                ["model_input", "market_context", "feature_manifest", "params:training", "data_fingerprint"],
                "training_arrays",
                name="build_training_arrays",
            ),
            Node(
                nodes.train_model,
                ["training_arrays", "graphs", "splits", "feature_manifest", "checkpoints", "params:phase", "params:training",
                 "data_fingerprint", "market_features", "params:normalisation"],
                ["training_history", "model"],
                name="train_model",
            ),
            Node(nodes.plot_training_history, ["training_history", "params:training"], "training_history_plot", name="plot_training_history"),
        ]
    )
