"""How much of the synthetic market's planted lead-lag each graph configuration holds.

    python experiments/graph_quality.py --size small --split val
    python experiments/graph_quality.py --market random_leaders

Builds the graphs of the default synthetic market (``--market``: the layout, ``--size``) once per
configuration and scores them against the simulator's clusters with ``atft_kedro.graph.quality``
(the score ``graph_construction`` writes to ``graph_quality.json``: mate recall and precision,
leader precision and its chance level), plus a probe of what the edges carry: the mean next-day
RankIC of each stock's neighbours' mean market-relative return today (for the true leaders as
neighbours it is printed as ``true leaders``). The graph findings in docs/ come from this script.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import polars as pl

CONFIGS = {
    "raw, W=60": {"returns": "raw", "window": 60, "min_periods": 40, "blend_window": None},
    "relative, W=60": {"returns": "relative", "window": 60, "min_periods": 40, "blend_window": None},
    "sector_relative, W=60": {"returns": "sector_relative", "window": 60, "min_periods": 40, "blend_window": None},
    "relative, W=120": {"returns": "relative", "window": 120, "min_periods": 40, "blend_window": None},
    "relative, W=250": {"returns": "relative", "window": 250, "min_periods": 40, "blend_window": None},
    "sector_relative, W=250": {"returns": "sector_relative", "window": 250, "min_periods": 40, "blend_window": None},
    "relative, W=60 + 250": {"returns": "relative", "window": 60, "min_periods": 40, "blend_window": 250},
    "sector_relative, W=60 + 250": {"returns": "sector_relative", "window": 60, "min_periods": 40, "blend_window": 250},
    "lead_lag, relative, W=250": {"returns": "relative", "window": 250, "min_periods": 40, "lead_lag": True, "blend_window": None},
}


def pair_correlations(quotes: pl.DataFrame, oracle: pl.DataFrame, listed: pl.DataFrame) -> dict:
    """Mean correlation of cluster mates' market-relative daily returns over all days, by pair
    (leader, follower) and by whether they share a sector -> {pair: (same day, follower on day t
    with the other on day t-1)}."""
    q = quotes.sort("Code", "Date").with_columns(r=(pl.col("AdjustmentClose") / pl.col("AdjustmentClose").shift(1) - 1).over("Code"))
    wide = q.pivot(on="Code", index="Date", values="r").sort("Date")
    codes = wide.columns[1:]
    r = wide.drop("Date").to_numpy()[1:]
    r = r - np.nanmean(r, axis=1, keepdims=True)
    truth = oracle.group_by("Code").agg(pl.col("cluster").first(), pl.col("is_leader").first()).join(listed.select("Code", "Sector33Code"), on="Code")
    row = {c: rest for c, *rest in truth.iter_rows()}
    cluster, leader, sector = (np.array([row[c][i] for c in codes]) for i in range(3))
    same_day = np.ma.corrcoef(np.ma.masked_invalid(r).T).filled(np.nan)
    a, b = np.nan_to_num(r[1:]), np.nan_to_num(r[:-1])
    a, b = (a - a.mean(0)) / a.std(0), (b - b.mean(0)) / b.std(0)
    lagged = a.T @ b / len(a)  # [i, j]: i on day t with j on day t-1
    mates = (cluster[:, None] == cluster[None, :]) & ~np.eye(len(codes), dtype=bool)
    pairs = {"leader-leader": leader[:, None] & leader[None, :], "follower-leader": ~leader[:, None] & leader[None, :],
             "follower-follower": ~leader[:, None] & ~leader[None, :]}  # fmt: skip
    out = {}
    for name, kind in pairs.items():
        for where, place in (("across sectors", sector[:, None] != sector[None, :]), ("in one sector", sector[:, None] == sector[None, :])):
            chosen = mates & kind & place
            if chosen.any():
                out[f"{name}, {where}"] = (round(float(np.nanmean(same_day[chosen])), 3), round(float(np.nanmean(lagged[chosen])), 3))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="small")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--market", default="size_leaders", help="the synthetic market's layout (raw.synthetic_market)")
    parser.add_argument("--overrides", default="{}", help="SyntheticConfig fields as JSON (raw.synthetic_overrides)")
    parser.add_argument("--configs", default=None, help="JSON: name -> GraphConfig fields, instead of the built-in list")
    args = parser.parse_args()

    from atft_kedro.graph.correlation import GraphConfig, build_graphs_from_grid, graph_returns, return_grid
    from atft_kedro.graph.quality import planted_clusters, planted_structure_recall, true_leader_neighbours
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory
    from atft_kedro.training.predict import daily_rank_ic

    raw = {"synthetic_size": args.size, "synthetic_market": args.market, "synthetic_overrides": json.loads(args.overrides)}
    params = project_parameters({"raw": raw})
    data = run_in_memory(["data_engineering"], params)
    oracle, splits = data["oracle_returns"], data["splits"]
    print("cluster mates' return correlations (same day, follower a day after):",
          pair_correlations(data["daily_quotes"], oracle, data["listed_info"]), flush=True)  # fmt: skip
    grid = return_grid(data["panel"])
    relative = graph_returns(grid, "relative")
    dates = splits.filter(pl.col("split") == args.split)["Date"].to_numpy().astype("datetime64[D]")
    position = {d: i for i, d in enumerate(grid.dates)}
    cluster, leader = planted_clusters(oracle, grid.codes)  # per grid column

    def probe(neighbours_of) -> float:
        """Mean over dates of the RankIC between the neighbours' mean relative return today and tomorrow's return."""
        rows = []
        for d in dates:
            t = position[d]
            if t + 1 >= len(grid.dates):
                continue
            members = np.flatnonzero(grid.present[t])
            nbrs = neighbours_of(d, members)
            valid = nbrs >= 0
            today = np.nan_to_num(relative[t, members])
            signal = np.where(valid, today[np.where(valid, nbrs, 0)], 0).sum(1) / np.maximum(valid.sum(1), 1)
            rows.append(pl.DataFrame({"Date": np.full(len(members), d), "pred_1d": signal, "target_1d": grid.returns[t + 1, members]}))
        return daily_rank_ic(pl.concat(rows), ["1d"], 20)["1d"]  # the evaluation's RankIC

    def true_leaders(d, members):
        return true_leader_neighbours(cluster[members], leader[members], 8)

    out = {"size": args.size, "market": args.market, "overrides": raw["synthetic_overrides"], "split": args.split, "dates": len(dates),
           "true leaders": {"neighbour_return_rank_ic": probe(true_leaders)}}  # fmt: skip
    default = params["graph"]
    configs = json.loads(args.configs) if args.configs else CONFIGS
    for name, overrides in {"default (conf/base)": {}, **configs}.items():
        graphs = build_graphs_from_grid(grid, GraphConfig(**{**default, **overrides}), dates, progress=False)
        score = planted_structure_recall(graphs, oracle, splits.filter(pl.col("split") == args.split))[args.split]
        score["neighbour_return_rank_ic"] = probe(lambda d, members, g=graphs: g.graph(d).neighbors.numpy())
        out[name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in score.items()}
        print(name, out[name], flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
