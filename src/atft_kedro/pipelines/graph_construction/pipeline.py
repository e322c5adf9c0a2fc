from kedro.pipeline import Node, Pipeline

from . import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(nodes.build_stock_graphs, ["panel", "params:graph", "data_fingerprint"], "graphs", name="build_stock_graphs"),
            Node(nodes.score_graphs, ["graphs", "oracle_returns", "splits"], "graph_quality", name="score_graphs"),
        ]
    )
