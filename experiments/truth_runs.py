"""Is the best baseline on test a bar that skill can clear? Forecasters told the synthetic market's
truth, scored as the model is.

    python experiments/truth_runs.py --out runs/default_s7 --params '{"raw": {"synthetic_seed": 7}}'
    python experiments/seeds.py --markets runs/default_s7/filter.json runs/default_s21/filter.json ...

For one synthetic market (the project's parameters with ``--params`` merged in), writes three
``seeds.py`` runs (``filter.json``, ``oracle.json``, ``taught.json`` in ``--out``, each one run
with its scored frame) whose forecast is, in place of the model's:

- ``filter``: the privileged filter of ``synthetic_ceiling.py``, a Kalman filter told every past
  market, sector and cluster shock, each stock's loadings and its idiosyncratic variance, which
  estimates each stock's slow drift and today's idiosyncratic shock from its own returns. It knows
  more than any forecaster from prices can, so in expectation none ranks above it: a bound on
  what the market lets skill reach at each horizon.
- ``oracle``: the simulator's own expected returns (the drift and today's shocks known exactly).
- ``taught``: the evaluation's ridge on the model's own features, fitted on the training split to
  the oracle's h-day expected returns less each date's sector means and beta part in place of the
  realised returns (its penalty chosen on validation against the same), so what it fits holds
  none of the returns' noise. It sees only what the model sees, and learns as if the training
  split held unlimited draws of the same market: the least-squares map of the oracle on the
  model's own features, what a linear learner on them tends to as its training grows. Where it is
  below the best baseline on test, these features' linear content does not clear that bar (a
  finite fit may still rank one test split higher by chance); where it is above and the model is
  not, what is missing is learning, not the features.

Each is scored by the evaluation's own code (``evaluate_predictions``) beside the four baselines,
fitted as the evaluation fits them, on the test split. ``seeds.py --markets`` then gives, per
horizon and over several draws, each forecaster minus the best baseline on test (and minus the
one validation picks), raw and with sectors and beta out, exactly as it gives the model's. Where
the filter itself is below the best baseline on test, that bar is above what knowing the market's
factor paths gives: a model can clear it by luck, not by skill. No training; about a minute a draw.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl

from seeds import beta_and_sector, scored_frame
from synthetic_ceiling import privileged_filter


def truth_frame(cfg, dates: np.ndarray, codes: np.ndarray) -> pl.DataFrame:
    """(Date, Code, filter_{h}d, oracle_{h}d) for every day and stock of the simulated market of
    ``cfg``, from its paths (``privileged_filter``), on the rows of ``dates`` and ``codes``."""
    from atft_kedro.data.synthetic import generate_market

    paths = generate_market(cfg, keep_paths=True).paths
    oracle, filtered = privileged_filter(cfg, paths)
    day = {d: i for i, d in enumerate(paths["dates"].astype("datetime64[D]"))}
    stock = {c: i for i, c in enumerate(paths["codes"].astype(str))}
    rows, columns = [day[d] for d in dates.astype("datetime64[D]")], [stock[c] for c in codes]
    return pl.DataFrame({"Date": dates, "Code": codes,
                         **{f"{name}_{h}d": forecast[rows, columns] for name, forecasts in (("filter", filtered), ("oracle", oracle))
                            for h, forecast in forecasts.items()}})  # fmt: skip


def truth_runs(overrides: dict, out: Path) -> dict[str, Path]:
    """The filter's and the oracle's ``seeds.py`` runs on the market of the project's parameters
    with ``overrides``, written under ``out`` -> {name: its runs' JSON}."""
    from atft_kedro.data.synthetic import SyntheticConfig
    from atft_kedro.evaluation.evaluate import EvaluationConfig, evaluate_predictions
    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.features.splits import split_dates
    from atft_kedro.features.targets import HORIZONS
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory

    params = project_parameters(overrides)
    raw = params["raw"]
    if params["source"] != "synthetic":
        raise SystemExit("truth_runs.py needs the synthetic market (its truth is the simulator's)")
    if int(params["splits"].get("n_folds", 1)) != 1:
        raise SystemExit("truth_runs.py scores one fold's test split (splits.n_folds 1)")
    data = run_in_memory(["data_engineering"], params)
    targets = [f"target_{h}d" for h in HORIZONS]
    rows = {split: data["model_input"].filter(pl.col("Date").is_in(split_dates(data["splits"], split).implode())).select("Date", "Code", *targets)
            for split in ("val", "test")}  # fmt: skip
    cfg = SyntheticConfig.sized(raw["synthetic_size"], raw["synthetic_market"], seed=raw["synthetic_seed"], **raw.get("synthetic_overrides", {}))
    truth = {split: truth_frame(cfg, r["Date"].to_numpy(), r["Code"].to_numpy()) for split, r in rows.items()}
    # the paths' oracle is the tables' oracle: the forecasts sit on the rows they belong to
    for split, r in rows.items():
        given = r.select("Date", "Code").join(data["oracle_returns"], on=["Date", "Code"], how="left", maintain_order="left")
        for h in HORIZONS:
            tables, paths = given[f"expected_return_{h}d"].to_numpy(), truth[split][f"oracle_{h}d"].to_numpy()
            quoted = np.isfinite(tables)  # a day a stock did not trade has no oracle row
            if quoted.mean() < 0.99 or not np.allclose(tables[quoted], paths[quoted], rtol=1e-6, atol=1e-12):
                raise AssertionError(f"the simulated paths' {h}-day oracle differs from oracle_returns on {split}: the rows are misplaced")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, forecast in taught_ridge(data, params).items():
        truth[split] = truth[split].with_columns(forecast)
    for name in ("filter", "oracle", "taught"):
        forecasts = {split: r.with_columns(truth[split][f"{name}_{h}d"].alias(f"pred_{h}d") for h in HORIZONS).select(
            "Date", "Code", *(f"pred_{h}d" for h in HORIZONS), *targets) for split, r in rows.items()}  # fmt: skip
        result = evaluate_predictions(forecasts["test"], forecasts["test"], data["features"], data["model_input"], data["oracle_returns"],
                                      data["splits"], stock_feature_names(data["feature_manifest"]), EvaluationConfig.from_params(params["evaluation"]))  # fmt: skip
        frame = scored_frame(result.frame)
        frame.write_parquet(out / f"{name}.parquet")
        # validation's forecasts beside their beta and sector, as seeds.py keeps the model's (--groups pairs them)
        val = forecasts["val"].join(beta_and_sector(data["features"], data["model_input"]), on=["Date", "Code"], how="left", maintain_order="left")
        val.write_parquet(out / f"{name}_val.parquet")
        run = {"seed": 0, "forecaster": name, "metrics": result.document, "phase_val": {}, "starts": {}, "seconds": 0.0,
               "frame": str(out / f"{name}.parquet"), "val_frame": str(out / f"{name}_val.parquet"), "overrides": overrides}  # fmt: skip
        (out / f"{name}.json").write_text(json.dumps([run], indent=1))
        written[name] = out / f"{name}.json"
        summary = {h: round(result.document["horizons"][h]["model"]["rank_ic"], 4) for h in result.document["horizons"]}
        print(f"{name}: test RankIC {summary}, runs in {written[name]}", flush=True)
        if name == "filter":
            for line in filter_parts(frame, val):
                print(line, flush=True)
    return written


def taught_ridge(data: dict, params: dict) -> dict[str, list[pl.Series]]:
    """The ridge on the model's own features fitted on the training split to the oracle's h-day
    expected returns with each date's sector means and beta part out, its penalty the evaluation's
    grid's best on validation against the same -> {split: [taught_{h}d on that split's rows of
    the model input, in their order]} for validation and test (the rows ``truth_runs`` scores)."""
    from atft_kedro.evaluation.baselines import BaselineConfig, ridge_scores, tuned_ridge
    from atft_kedro.features.builders import stock_feature_names
    from atft_kedro.features.splits import split_dates
    from atft_kedro.features.targets import HORIZONS, sector_beta_residual

    names = stock_feature_names(data["feature_manifest"])
    oracle = data["oracle_returns"].join(beta_and_sector(data["features"], data["model_input"]), on=["Date", "Code"])
    neutral = [sector_beta_residual(f"expected_return_{h}d", "beta_60d", "Sector33Code").alias(f"taught_target_{h}d") for h in HORIZONS]
    oracle = oracle.select("Date", "Code", *neutral)
    frame = data["model_input"].join(oracle, on=["Date", "Code"], how="left", maintain_order="left")
    cfg = BaselineConfig.from_params(params["evaluation"])
    train, val = split_dates(data["splits"], "train"), split_dates(data["splits"], "val")
    coefs = {h: tuned_ridge(frame, names, f"taught_target_{h}d", train, val, cfg) for h in HORIZONS}
    for h, (_, info) in coefs.items():
        print(f"taught ridge, {h}d: penalty {info['alpha']:g}, validation RankIC against the oracle {info['val_rank_ic']:+.4f}", flush=True)
    rows = {split: frame.filter(pl.col("Date").is_in(split_dates(data["splits"], split).implode())) for split in ("val", "test")}
    return {split: [pl.Series(f"taught_{h}d", ridge_scores(r, names, coefs[h][0])) for h in HORIZONS] for split, r in rows.items()}


def filter_parts(test: pl.DataFrame, val: pl.DataFrame) -> list[str]:
    """Where the filter's long-horizon ranking comes from, with sectors and beta out of the returns:
    its 1-day forecast scored on the h-day returns, and the rest of its h-day forecast (less the
    1-day one: the drift's later days), per split."""
    from seeds import _daily

    lines = []
    for split, frame in (("validation", val), ("test", test)):
        for h in ("5d", "10d", "20d"):
            frame = frame.with_columns((pl.col(f"pred_{h}") - pl.col("pred_1d")).alias("_rest"))
            scores = {name: float(np.mean(list(_daily(frame, col, f"target_{h}", True).values())))
                      for name, col in (("the filter", f"pred_{h}"), ("its 1-day forecast", "pred_1d"), ("the rest", "_rest"))}  # fmt: skip
            lines.append(f"filter, {split}, {h}, sectors and beta out: " + ", ".join(f"{k} {v:+.4f}" for k, v in scores.items()))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="a directory: filter.json, oracle.json and taught.json (seeds.py runs) and their frames")
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON (e.g. the market and its seed)")
    args = parser.parse_args()
    truth_runs(json.loads(args.params), Path(args.out))


if __name__ == "__main__":
    main()
