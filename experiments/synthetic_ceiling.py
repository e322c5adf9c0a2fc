"""How much of the synthetic market's oracle a linear model can reach, and what the graph adds.

    python experiments/synthetic_ceiling.py --size small
    python experiments/synthetic_ceiling.py --overrides '{"cluster_vol": 0.010}'
    python experiments/synthetic_ceiling.py --market random_leaders --split test --lead-lag

On the default synthetic market (or one with ``SyntheticConfig`` overrides), prints the mean
RankIC (1d) on the validation dates (``--split test``: the test dates) of:

- the oracle (the simulator's own expected return);
- ridge on each stock's own features (the evaluation's ridge baseline: its solver, penalty and
  per-date demeaned target, fitted on the training split);
- ridge on own features plus the mean of its graph neighbours' features, for the default graph and
  two variants, with the graph's planted-structure scores (``atft_kedro.graph.quality``);
- the same with the *true* leaders of each stock's cluster as neighbours (diagnostic only: the
  simulator's truth, never available to the model), the ceiling of what a perfect graph gives.

The gap between "own" and "true leaders" is what graph attention can win on this market; the gap
between the graph rows and "true leaders" is what the graph misses.

It also scores three *structural* forecasters that know how the simulator plants its 1-day effects
(``SyntheticConfig.reversal`` and ``lead_lag``) and see only the stocks' past returns, given more or
less of the simulator's truth (diagnostics, never available to the model). With ``res`` a stock's
return today minus its sector's mean return today:

- no graph: ``-reversal * res`` (yesterday's idiosyncratic shock reverts);
- clusters known: plus ``lead_lag / 2 * mean(res of the other members of its cluster)`` (which half
  leads is unknown, so every member expects half the catch-up);
- clusters and roles known: plus ``lead_lag * mean(res of its cluster's leaders)`` for followers only.

They show how much of the oracle's 1-day RankIC a forecaster can reach from prices once it knows
the peers (and their roles) exactly: the ceiling a graph-based model works under, as opposed to the
oracle, which also knows every stock's slow drift and today's shocks exactly. Each is also added,
z-scored per date, as one more column to the ridge on own features.

``--lead-lag`` scores instead forecasters that estimate who leads from past returns alone
(``lead_lag_forecasts``): a stock's neighbours' returns today, each weighted by how much its
return followed that neighbour's by a day, alone and as one more column (or one per feature) of
the ridge; on the graph's long attribute also over each stock's first 5 or 10 neighbour slots only
(a date's slots are ordered by score), and with the first 10 and the rest as two blocks of
columns (what the neighbour skip's ``lead_bands`` reads).

Last, at every horizon, a *privileged filter*: a Kalman filter told every past factor shock (market,
sector, cluster), each stock's loadings and its idiosyncratic variance, so that what it does not
know of a stock's return is only the slow drift and the idiosyncratic shock; it estimates both
from the stock's own returns (the best linear forecast with that much knowledge). It bounds from
above what any forecaster can see of the drift, the part of the oracle that dominates the longer
horizons. Used to calibrate the simulator (its docstring and the README quote the numbers).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import polars as pl

RIDGE_ALPHA = 1000.0  # the ridge's penalty here (features are robust z-scores)
GRAPHS = {
    "default graph (relative, W=120, k=20)": {},
    "relative, W=60": {"returns": "relative", "window": 60},
    "relative, W=250": {"returns": "relative", "window": 250},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="small")
    parser.add_argument("--market", default="size_leaders", help="the synthetic market's layout (raw.synthetic_market)")
    parser.add_argument("--overrides", default="{}", help="SyntheticConfig fields as JSON")
    parser.add_argument("--graphs", default=None, help='graphs to score as JSON {name: graph parameters}, instead of the three above '
                        "(with --lead-lag: instead of the default graph, each name's fields over the default's)")
    parser.add_argument("--split", default="val", choices=["val", "test"], help="the dates scored (ridge fits on train)")
    parser.add_argument("--lead-lag", action="store_true", help="only the estimated lead-lag forecasters (see lead_lag_forecasts)")
    args = parser.parse_args()

    from atft_kedro.data.synthetic import SyntheticConfig
    from atft_kedro.evaluation.baselines import ridge_solve
    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.graph.correlation import GraphConfig, build_graphs
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory
    from atft_kedro.graph.quality import planted_clusters, planted_structure_recall, true_leader_neighbours
    from atft_kedro.training.data import build_arrays, split_indices
    from atft_kedro.training.predict import daily_rank_ic

    overrides = json.loads(args.overrides)
    params = project_parameters({"raw": {"synthetic_size": args.size, "synthetic_market": args.market, "synthetic_overrides": overrides}})
    data = run_in_memory(["data_engineering"], params)
    oracle, splits, panel = data["oracle_returns"], data["splits"], data["panel"]
    arrays = build_arrays(data["model_input"], data["market_context"], stock_feature_names(data["feature_manifest"]))
    train, scored = split_indices(arrays, splits, "train"), split_indices(arrays, splits, args.split)
    cluster, leader = planted_clusters(oracle, np.asarray(arrays.codes).astype(str))  # per array column
    column = {c: i for i, c in enumerate(np.asarray(arrays.codes).astype(str))}
    date_index = {d: i for i, d in enumerate(np.asarray(arrays.dates).astype("datetime64[D]"))}
    expected = np.full(arrays.present.shape, np.nan)  # [dates, codes] the oracle's 1d forecast
    known = oracle.filter(pl.col("Date").is_in(pl.Series(np.asarray(arrays.dates).astype("datetime64[D]")).implode()))
    expected[[date_index[d] for d in known["Date"].to_numpy().astype("datetime64[D]")],
             [column[c] for c in known["Code"]]] = known["expected_return_1d"].to_numpy()  # fmt: skip

    def design(date_indices, neighbours_of, extra=None):
        """Rows of (own features [, neighbour-mean features] [, ``extra`` [dates, codes]]), 1d
        targets, oracle, date index."""
        xs, ys, os, ds = [], [], [], []
        for di in date_indices:
            members = np.flatnonzero(arrays.present[di])
            x, y = arrays.features[di, members], arrays.targets[di, members, 0]
            if neighbours_of is not None:
                nbrs = neighbours_of(di, members)  # (n, k) rows of ``members``, -1 padded
                valid = nbrs >= 0
                mean = (x[np.where(valid, nbrs, 0)] * valid[..., None]).sum(1) / np.maximum(valid.sum(1, keepdims=True), 1)
                x = np.hstack([x, mean])
            if extra is not None:  # [dates, codes] one column, or [dates, codes, F] several
                x = np.hstack([x, extra[di, members].reshape(len(members), -1)])
            ok = np.isfinite(y)
            xs.append(x[ok]), ys.append(y[ok]), os.append(expected[di, members][ok]), ds.append(np.full(ok.sum(), di))
        return np.vstack(xs), np.concatenate(ys), np.concatenate(os), np.concatenate(ds)

    def mean_rank_ic(score, y, d, h=1):  # the evaluation's RankIC
        frame = pl.DataFrame({"Date": d, f"pred_{h}d": score, f"target_{h}d": y})
        return daily_rank_ic(frame, [f"{h}d"], 20)[f"{h}d"]

    alpha = RIDGE_ALPHA

    def ridge(neighbours_of=None, extra=None) -> float:
        x, y, _, d = design(train, neighbours_of, extra)
        y = y - np.bincount(d, y)[d] / np.bincount(d)[d]  # only the cross-section matters, as in fit_ridge
        coef = ridge_solve(x, y, alpha)
        xv, yv, _, dv = design(scored, neighbours_of, extra)
        return mean_rank_ic(xv @ coef[:-1] + coef[-1], yv, dv)

    def graph_neighbours(graphs):
        def of(di, members):
            g = graphs.graph(arrays.dates[di])
            if not (np.asarray(g.codes) == np.asarray(arrays.codes)[members]).all():
                raise AssertionError("graph rows and the date's stocks differ")
            return g.neighbors.numpy()

        return of

    def true_leaders(di, members):
        return true_leader_neighbours(cluster[members], leader[members], 8)

    _, yv, ov, dv = design(scored, None)
    if args.lead_lag:  # on the default graph, or on each of --graphs (fields over the default's), names prefixed
        out = {"split": args.split, "dates": len(scored), "ridge, own features": round(ridge(), 4)}
        names = stock_feature_names(data["feature_manifest"])
        one_day = [i for i, n in enumerate(names) if n in ONE_DAY_RETURNS]
        for graph_name, fields in ({"": {}} if args.graphs is None else json.loads(args.graphs)).items():
            graph = build_graphs(panel, GraphConfig(**{**params["graph"], **fields}), progress=False)
            forecasts = lead_lag_forecasts(panel, graph, arrays, cluster)
            for name, (forecast, weighted) in forecasts.items():
                name = f"{graph_name}: {name}" if graph_name else name
                xv, yv, _, dv = design(scored, None, forecast)
                out[name] = {"alone": round(mean_rank_ic(xv[:, -1], yv, dv), 4), "ridge, own + it": round(ridge(extra=forecast), 4),
                             "ridge, own + weighted neighbour features": round(ridge(extra=weighted), 4),
                             "ridge, own + weighted neighbour 1-day returns": round(ridge(extra=weighted[..., one_day]), 4),
                             "ridge, own + neighbour mean + weighted neighbour features": round(ridge(graph_neighbours(graph), weighted), 4),
                             "ridge, own + neighbour mean + weighted neighbour 1-day returns":
                                 round(ridge(graph_neighbours(graph), weighted[..., one_day]), 4)}  # fmt: skip
                print(name, out[name], flush=True)
            # the first 10 slots and the rest as two blocks of columns: the ridge weighs near and far neighbours apart
            near, every = forecasts["lead-lag, graph's long attribute, first 10 slots"][1], forecasts["lead-lag, graph's long attribute"][1]
            bands = np.concatenate([near[..., one_day], (every - near)[..., one_day]], axis=-1)
            name = f"{graph_name}: " * bool(graph_name) + "lead-lag, graph's long attribute, slots 0-9 and 10- apart"
            out[name] = {"ridge, own + neighbour mean + weighted neighbour 1-day returns": round(ridge(graph_neighbours(graph), bands), 4),
                         "ridge, own + weighted neighbour 1-day returns": round(ridge(extra=bands), 4)}  # fmt: skip
            print(name, out[name], flush=True)
        print(json.dumps(out, indent=1))
        return
    out = {"overrides": overrides, "split": args.split, "dates": len(scored), "oracle": mean_rank_ic(ov, yv, dv), "ridge, own features": ridge()}
    scored_splits = splits.filter(pl.col("split") == args.split)
    for name, cfg in (GRAPHS if args.graphs is None else json.loads(args.graphs)).items():
        graphs = build_graphs(panel, GraphConfig(**{**params["graph"], **cfg}), progress=False)
        score = planted_structure_recall(graphs, oracle, scored_splits)[args.split]
        out[name] = {
            "ridge, own + neighbours": round(ridge(graph_neighbours(graphs)), 4),
            "mate_recall": round(score["mate_recall"], 3),
            "mate_precision": round(score["mate_precision"], 3),
            "leader_precision": round(score["leader_precision"], 3),
        }
        print(name, out[name], flush=True)
    out["ridge, own + true leaders"] = ridge(true_leaders)
    cfg = SyntheticConfig.sized(args.size, args.market, seed=params["raw"]["synthetic_seed"], **overrides)
    structural = structural_forecasts(panel, oracle, cfg, arrays)
    for name, forecast in structural.items():
        xv, yv, _, dv = design(scored, None, forecast)
        out[name] = mean_rank_ic(xv[:, -1], yv, dv)
        out[f"ridge, own features + {name}"] = ridge(extra=forecast)
    out["privileged filter"] = privileged_filter_scores(cfg, arrays, scored, mean_rank_ic)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}, indent=1))


def group_sums(values: np.ndarray, group: np.ndarray, members: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """[D, S] -> ([D, S], [D, S]): for each stock and date, the sum of ``values`` over the stocks of
    its ``group`` (those in ``members`` only, when given) and how many had a value, NaN ignored."""
    members = np.ones(len(group), bool) if members is None else members
    groups = np.unique(group)
    onehot = (group[:, None] == groups[None, :]) & members[:, None]  # [S, G]
    valid = np.isfinite(values)
    back = np.searchsorted(groups, group)
    return (np.where(valid, values, 0.0) @ onehot)[:, back], (valid.astype(float) @ onehot)[:, back]


def group_mean(values: np.ndarray, group: np.ndarray, members: np.ndarray | None = None) -> np.ndarray:
    """``group_sums`` as a mean; NaN where the group has no value that date."""
    sums, counts = group_sums(values, group, members)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def in_arrays_layout(values: np.ndarray, dates: np.ndarray, codes: np.ndarray, arrays) -> np.ndarray:
    """[dates, codes] (both sorted) -> [dates, codes] of ``arrays``."""
    rows = np.searchsorted(dates, np.asarray(arrays.dates).astype("datetime64[D]"))
    columns = np.searchsorted(codes, np.asarray(arrays.codes).astype(str))
    return values[np.ix_(rows, columns)]


def structural_forecasts(panel, oracle, cfg, arrays) -> dict[str, np.ndarray]:
    """The three structural forecasters of the module docstring, as [dates, codes] of ``arrays``."""
    from atft_kedro.graph.correlation import return_grid
    from atft_kedro.graph.quality import planted_clusters

    grid = return_grid(panel)
    cluster, leader = planted_clusters(oracle, grid.codes)
    res = grid.returns - group_mean(grid.returns, grid.sector)  # today's return minus its sector's mean
    own = np.nan_to_num(res)
    sums, counts = group_sums(res, cluster)
    mates = (sums - own) / np.maximum(counts - np.isfinite(res), 1)  # the other members only
    leaders = group_mean(res, cluster, leader)
    reversal = -cfg.reversal * own
    forecasts = {
        "structural, no graph": reversal,
        "structural, clusters known": reversal + cfg.lead_lag / 2 * np.nan_to_num(mates),
        "structural, clusters and roles known": reversal + np.where(leader, 0.0, cfg.lead_lag) * np.nan_to_num(leaders),
    }
    out = {}
    for name, f in forecasts.items():  # z-scored per date over its stocks, like the features
        f = np.where(arrays.present, np.nan_to_num(in_arrays_layout(f, grid.dates, grid.codes, arrays)), np.nan)
        mean, std = np.nanmean(f, 1, keepdims=True), np.nanstd(f, 1, keepdims=True)
        out[name] = np.nan_to_num((f - mean) / np.where(std > 0, std, 1.0))
    return out


ONE_DAY_RETURNS = ("ret_1d", "log_ret_1d", "resid_ret_1d", "rel_sector_ret_1d", "ret_intraday")  # features of the last day's return
LEAD_LAG = {  # name: (how the lag correlations are estimated, which pairs count)
    "lead-lag, expanding, graph neighbours": ("expanding", "graph"),
    "lead-lag, halflife 250, graph neighbours": (250, "graph"),
    "lead-lag, halflife 120, graph neighbours": (120, "graph"),
    "lead-lag, expanding, all stocks": ("expanding", "all"),
    "lead-lag, expanding, true mates": ("expanding", "mates"),
    "lead-lag, graph's 120-day attribute": ("neighbour_leads", "graph"),
    "lead-lag, graph's long attribute": ("neighbour_leads_long", "graph"),
    "lead-lag, graph's long attribute, first 5 slots": ("neighbour_leads_long", "graph5"),
    "lead-lag, graph's long attribute, first 10 slots": ("neighbour_leads_long", "graph10"),
}


def lead_lag_forecasts(panel, graphs, arrays, cluster) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Forecasters that *estimate* who leads whom from past returns alone: with r market-relative
    returns and c[i, j] the correlation of i's return on day s with j's on day s - 1 over the days
    s <= t (every day: ``expanding``; exponentially weighted with a half-life; or one of the graph's
    edge attributes: the 120-day ``neighbour_leads``, the 250-day half-life ``neighbour_leads_long``), i's forecast for t + 1 is sum_j max(c[i, j], 0)
    r[j, t] over j among i's neighbours in the graph of t, all stocks, or (a diagnostic) i's true
    cluster mates. -> {name: (forecast [dates, codes] z-scored per date, the same weights applied
    to the neighbours' features [dates, codes, F])}, in the layout of ``arrays``."""
    from atft_kedro.graph.correlation import EDGE_ATTRIBUTES, graph_returns, return_grid

    grid = return_grid(panel)
    z = np.nan_to_num(graph_returns(grid, "relative"))
    codes = np.asarray(arrays.codes).astype(str)
    columns = np.searchsorted(grid.codes, codes)  # arrays column -> grid column
    mates = cluster[:, None] == cluster[None, :]
    np.fill_diagonal(mates, False)
    wanted = {p: di for di, p in enumerate(np.searchsorted(grid.dates, np.asarray(arrays.dates).astype("datetime64[D]")))}
    decays = {e for e, _ in LEAD_LAG.values() if e not in EDGE_ATTRIBUTES}
    cross = {e: np.zeros((z.shape[1], z.shape[1])) for e in decays}
    square = {e: np.zeros(z.shape[1]) for e in decays}
    forecast = {n: np.full(arrays.present.shape, np.nan) for n in LEAD_LAG}
    features = {n: np.zeros(arrays.features.shape[:2] + arrays.features.shape[-1:]) for n in LEAD_LAG}
    for p in range(1, len(grid.dates)):
        for e in decays:
            keep = 1.0 if e == "expanding" else 0.5 ** (1.0 / e)
            cross[e] *= keep
            cross[e] += np.outer(z[p], z[p - 1])
            square[e] *= keep
            square[e] += z[p] ** 2
        if p not in wanted:
            continue
        di = wanted[p]
        members = np.flatnonzero(arrays.present[di])
        if len(members) == 0:
            continue
        cols = columns[members]
        g = graphs.graph(arrays.dates[di])
        nbrs = g.neighbors.numpy()
        valid = nbrs >= 0
        rows = np.repeat(np.arange(len(cols)), nbrs.shape[1])[valid.ravel()]
        slot = np.broadcast_to(np.arange(nbrs.shape[1]), nbrs.shape)[valid]  # a date's slots are ordered by score
        ends = nbrs[valid]
        adjacency = np.zeros((len(cols), len(cols)))
        adjacency[rows, ends] = 1.0
        pairs = {"graph": adjacency, "all": 1.0 - np.eye(len(cols)), "mates": mates[np.ix_(members, members)]}
        for m in {int(among[5:]) for _, among in LEAD_LAG.values() if among.startswith("graph") and among != "graph"}:
            pairs[f"graph{m}"] = np.zeros((len(cols), len(cols)))
            pairs[f"graph{m}"][rows[slot < m], ends[slot < m]] = 1.0  # the first m slots only
        x_last = arrays.features[di, members]
        for name, (estimate, among) in LEAD_LAG.items():
            if estimate in EDGE_ATTRIBUTES:
                c = np.zeros((len(cols), len(cols)))
                c[rows, ends] = g.edge_attr.numpy()[..., EDGE_ATTRIBUTES.index(estimate)][valid]
            else:
                norm = np.sqrt(np.maximum(square[estimate][cols], 1e-300))
                c = cross[estimate][np.ix_(cols, cols)] / norm[:, None] / norm[None, :]
            weights = np.maximum(c, 0.0) * pairs[among]
            forecast[name][di, members] = weights @ z[p, cols]
            features[name][di, members] = weights @ x_last
    out = {}
    for name, f in forecast.items():
        f = np.where(arrays.present, np.nan_to_num(f), np.nan)
        mean, std = np.nanmean(f, 1, keepdims=True), np.nanstd(f, 1, keepdims=True)
        out[name] = (np.nan_to_num((f - mean) / np.where(std > 0, std, 1.0)), features[name])
    return out


def privileged_filter(cfg, paths: dict) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """-> ({h: oracle}, {h: filter}) forecasts of the h-day return, [days, stocks] of ``paths``.

    Told every factor shock, the filter sees y[t] = alpha[t-1] - reversal * eps[t-1] + eps[t] per
    stock (its return minus everything it knows) and tracks the state (alpha[t], alpha[t-1], eps[t],
    eps[t-1]) with a Kalman filter: AR(1) drift, eps[t] drawn with its known GARCH variance."""
    from atft_kedro.features.targets import HORIZONS

    alpha, eps, mu, eps_var = paths["alpha"], paths["eps"], paths["mu"], paths["eps_var"]
    phi, rev = cfg.alpha_persistence, cfg.reversal
    d, n = alpha.shape
    y = np.vstack([eps[:1], alpha[:-1] - rev * eps[:-1] + eps[1:]])
    transition = np.array([[phi, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]], float)
    observe = np.array([0, 1, 1, -rev], float)
    mean = np.zeros((n, 4))
    mean[:, 2] = y[0]  # day 0's return carries no drift yet: its shock is seen exactly
    cov = np.zeros((n, 4, 4))
    cov[:, 0, 0] = cfg.alpha_std**2
    alpha_hat, eps_hat = np.zeros((d, n)), np.zeros((d, n))
    eps_hat[0] = y[0]
    for t in range(1, d):
        mean, cov = mean @ transition.T, transition @ cov @ transition.T
        cov[:, 0, 0] += cfg.alpha_std**2 * (1 - phi**2)
        cov[:, 2, 2] += eps_var[t]
        gain = (cov @ observe) / (np.einsum("i,nij,j->n", observe, cov, observe) + 1e-18)[:, None]
        mean = mean + gain * (y[t] - mean @ observe)[:, None]
        cov = cov - gain[:, :, None] * (observe @ cov)[:, None, :]
        alpha_hat[t], eps_hat[t] = mean[:, 0], mean[:, 2]
    oracle, filtered = {}, {}
    for h in HORIZONS:
        drift_sum = (1 - phi**h) / (1 - phi)
        rest = mu - alpha + (h - 1) * paths["beta"] * cfg.market_drift  # all but the stock's own drift
        oracle[h] = alpha * drift_sum + rest
        filtered[h] = alpha_hat * drift_sum + rest + rev * (eps - eps_hat)  # the filter's own shock estimate
    return oracle, filtered


def privileged_filter_scores(cfg, arrays, dates, mean_rank_ic) -> dict:
    """RankIC per horizon of the oracle and the privileged filter on ``dates`` of ``arrays``."""
    from atft_kedro.data.synthetic import generate_market

    paths = generate_market(cfg, keep_paths=True).paths
    oracle, filtered = privileged_filter(cfg, paths)
    out = {}
    for hi, h in enumerate(sorted(oracle)):
        y = arrays.targets[dates, :, hi]
        known = arrays.present[dates] & np.isfinite(y)  # [dates, codes]
        d = np.broadcast_to(np.asarray(dates)[:, None], known.shape)[known]
        scores = {}
        for name, forecast in (("oracle", oracle[h]), ("filter", filtered[h])):
            f = in_arrays_layout(forecast, paths["dates"], paths["codes"], arrays)[dates]
            scores[name] = round(mean_rank_ic(f[known], y[known], d, h), 4)
        scores["share"] = round(scores["filter"] / scores["oracle"], 3)
        out[f"{h}d"] = scores
        print(f"privileged filter {h}d", scores, flush=True)
    return out


if __name__ == "__main__":
    main()
