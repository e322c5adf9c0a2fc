from kedro.pipeline import Node, Pipeline

from . import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                nodes.load_raw_market,
                ["params:source", "params:raw", "jquants_credentials"],
                ["daily_quotes", "listed_info", "topix", "oracle_returns", "quarantine"],
                name="load_raw_market",
            ),
            Node(nodes.build_panel, ["daily_quotes", "listed_info"], "panel", name="build_panel"),
            Node(
                nodes.build_features,
                ["panel", "topix"],
                ["features", "market_features", "feature_manifest"],
                name="build_features",
            ),
            Node(nodes.build_targets, "panel", "targets", name="build_targets"),
            Node(nodes.make_splits, ["panel", "params:splits"], "splits", name="make_splits"),
            Node(
                nodes.build_model_input,
                ["features", "targets", "panel", "feature_manifest", "params:normalisation"],
                "model_input",
                name="build_model_input",
            ),
            Node(
                nodes.build_market_context,
                ["market_features", "splits", "params:normalisation"],
                "market_context",
                name="build_market_context",
            ),
            Node(
                nodes.fingerprint_data,
                ["daily_quotes", "listed_info", "topix", "params:source", "params:splits", "params:normalisation"],
                "data_fingerprint",
                name="fingerprint_data",
            ),
        ]
    )
