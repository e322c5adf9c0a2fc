from kedro.pipeline import Node, Pipeline

from atft_kedro.pipelines.data_engineering import nodes as data

from . import nodes

LATEST = "latest_"  # the latest data, in memory: data_engineering's artifacts of the training run stay as they are


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                data.load_raw_market,
                ["params:source", "params:raw", "jquants_credentials"],
                [f"{LATEST}daily_quotes", f"{LATEST}listed_info", f"{LATEST}topix", f"{LATEST}oracle_returns", f"{LATEST}quarantine"],
                name="load_latest_market",
            ),
            Node(data.build_panel, [f"{LATEST}daily_quotes", f"{LATEST}listed_info"], f"{LATEST}panel", name="build_latest_panel"),
            Node(
                data.build_features,
                [f"{LATEST}panel", f"{LATEST}topix"],
                [f"{LATEST}features", f"{LATEST}market_features", f"{LATEST}feature_manifest"],
                name="build_latest_features",
            ),
            Node(
                nodes.rank_latest,
                ["model", f"{LATEST}panel", f"{LATEST}features", f"{LATEST}market_features", f"{LATEST}feature_manifest",
                 "splits", "graphs", "data_fingerprint", "params:normalisation", "params:inference", "params:forecast"],
                ["ranking_csv", "ranking_parquet", "ranking_summary"],
                name="rank_latest",
            ),  # fmt: skip
        ]
    )
