from kedro.pipeline import Node, Pipeline

from . import nodes


WALK_FORWARD = ["checkpoints", "market_features", "params:normalisation", "params:forecast"]  # each fold's checkpoint and market context; how the forecast is made


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(nodes.predict_test, ["model", "training_arrays", "graphs", "splits", "model_input", "data_fingerprint", *WALK_FORWARD],
                 "predictions", name="predict_test"),  # fmt: skip
            Node(nodes.predict_validation, ["model", "training_arrays", "graphs", "splits", "model_input", "data_fingerprint", *WALK_FORWARD],
                 "validation_predictions", name="predict_validation"),  # fmt: skip
            Node(
                nodes.predict_test_random_graph,
                ["model", "training_arrays", "graphs", "splits", "model_input", "params:evaluation", "data_fingerprint", *WALK_FORWARD],
                "random_graph_predictions",
                name="predict_test_random_graph",
            ),
            Node(
                nodes.feature_importance,
                ["model", "training_arrays", "graphs", "splits", "model_input", "validation_predictions", "feature_manifest", "params:evaluation",
                 "data_fingerprint", *WALK_FORWARD],
                ["feature_importance", "feature_importance_plot"],
                name="feature_importance",
            ),  # fmt: skip
            Node(
                nodes.evaluate,
                ["predictions", "random_graph_predictions", "features", "model_input", "oracle_returns", "splits",
                 "feature_manifest", "params:source", "params:evaluation", "model", "data_fingerprint", "validation_predictions",
                 "feature_importance", "params:forecast"],
                ["metrics", "evaluation_report", "cumulative_returns_plot", "rolling_ic_plot", "quantile_returns_plot", "rank_ic_by_horizon_plot",
                 "forecast_parts_plot"],
                name="evaluate",
            ),  # fmt: skip
        ]
    )
