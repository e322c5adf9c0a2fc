"""Can a neural network on the last day's features rank as LightGBM does? Measured without the
model's sequence encoder, graph or phases, on the features the ridge and LightGBM baselines see.

    python experiments/tabular_nets.py --params '{"source": "files", "raw": {"files_dir": "../shared/data/stocknet"}, "splits": {"n_folds": 3, "test_fraction": 0.45}}'

Per fold (walk-forward as in the evaluation), the evaluation's ridge and LightGBM (tuned on
validation as always) and small MLPs (two hidden layers of 64, GELU, dropout 0.1, AdamW, 8 dates a
step, the epoch with the best validation RankIC kept, at most 40) trained with each ``--losses``:
``mse`` (the squared error on the date-demeaned target) or ``corr`` (minus the mean per-date
correlation of forecast and target, the model's own IC loss in its simplest form); ``:ridge``
adds a linear path started at the tuned ridge, the MLP's last layer at a tenth of its size (the
model's own-feature skip and heads, in small). Each net is the mean of its ``--seeds`` runs'
forecasts, each standardised. Prints validation (a net's: the mean of its seeds' best epochs')
and test RankIC per fold, then the pooled test RankIC and the paired per-date difference to
LightGBM with its Newey-West interval (lag h - 1). Reads the data_engineering outputs only (in
memory); one thread; about 10-15 s a net and fold on stocknet.

``--lightgbm-seeds 1,2,...``: LightGBM refitted with other seeds (its bagging and feature sampling)
beside the evaluation's seed 0, as more columns: how far the bar itself moves with its seed.

``--run DIR [DIR ...]``: finished ``kedro run``s of the same market and splits (say, training
seeds). The first net's forecast is added to each run's (each z-scored per date; walk-forward: fold
by fold) with weights 0 to 4, and the weight each fold's validation prefers is read on test once:
whether the net ranks anything the trained model does not (the runs' ``validation_predictions``
and ``predictions`` are only read).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def correlation_loss(p, y, date_index, n_dates: int):
    """Minus the mean over dates of the Pearson correlation of ``p`` and ``y`` within each date."""
    import torch

    def per_date_sum(v):
        return torch.zeros(n_dates, dtype=v.dtype).index_add(0, date_index, v)

    def centred(v):
        return v - (per_date_sum(v) / torch.bincount(date_index, minlength=n_dates))[date_index]

    a, b = centred(p), centred(y)
    dot, norms = per_date_sum(a * b), (per_date_sum(a * a) * per_date_sum(b * b)).sqrt()
    return -(dot / (norms + 1e-8)).mean()


def fit_net(x_train, y_train, dates_train, x_val, y_val, dates_val, loss: str, seed: int, ridge_coef, min_stocks: int,
            epochs: int = 40, dates_per_step: int = 8):
    """One MLP (with a ridge-started linear path when ``ridge_coef`` is given) -> (forecast
    function of a feature array, best validation RankIC, its epoch)."""
    import numpy as np
    import torch

    from atft_kedro.evaluation.baselines import mean_daily_rank_ic

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xt, yt = torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train, dtype=torch.float32)
    yt = yt / yt.std()
    _, date_of_row = np.unique(dates_train, return_inverse=True)
    date_of_row = torch.tensor(date_of_row)
    n_dates, n_features, hidden = int(date_of_row.max()) + 1, x_train.shape[1], 64
    net = torch.nn.Sequential(
        torch.nn.Linear(n_features, hidden), torch.nn.GELU(), torch.nn.Dropout(0.1),
        torch.nn.Linear(hidden, hidden), torch.nn.GELU(), torch.nn.Dropout(0.1), torch.nn.Linear(hidden, 1),
    )  # fmt: skip
    linear = None
    if ridge_coef is not None:
        linear = torch.nn.Linear(n_features, 1)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(ridge_coef[:-1], dtype=torch.float32)[None] / float(np.std(y_train)))
            linear.bias.zero_()
            net[-1].weight.mul_(0.1)
            net[-1].bias.zero_()
    modules = torch.nn.ModuleList([net] + ([linear] if linear is not None else []))
    optimizer = torch.optim.AdamW(modules.parameters(), lr=1e-3, weight_decay=1e-4)

    def forecast(x):
        return net(x)[:, 0] + (linear(x)[:, 0] if linear is not None else 0.0)

    xv = torch.tensor(x_val, dtype=torch.float32)
    best = (-np.inf, None, -1)
    for epoch in range(epochs):
        modules.train()
        order = rng.permutation(n_dates)
        for start in range(0, n_dates, dates_per_step):
            rows = torch.isin(date_of_row, torch.tensor(order[start : start + dates_per_step]))
            p, y = forecast(xt[rows]), yt[rows]
            _, step_dates = torch.unique(date_of_row[rows], return_inverse=True)
            if loss == "mse":
                value = ((p - y) ** 2).mean()
            else:
                value = correlation_loss(p, y, step_dates, int(step_dates.max()) + 1)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
        modules.eval()
        with torch.no_grad():
            score = mean_daily_rank_ic(dates_val, forecast(xv).numpy(), y_val, min_stocks)
        if score > best[0]:
            best = (score, {k: v.clone() for k, v in modules.state_dict().items()}, epoch)
    modules.load_state_dict(best[1])
    modules.eval()

    def predict(x):
        with torch.no_grad():
            return forecast(torch.tensor(x, dtype=torch.float32)).numpy()

    return predict, best[0], best[2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--params", default="{}", help="parameters merged into conf/base's, as JSON")
    parser.add_argument("--horizon", default="1d")
    parser.add_argument("--losses", default="mse,corr,mse:ridge,corr:ridge", help="the nets, comma-separated")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="each net is the mean of these seeds' forecasts")
    parser.add_argument("--lightgbm-seeds", default="", help="more LightGBM seeds beside the evaluation's, comma-separated: its own spread")
    parser.add_argument("--run", nargs="+", default=[], help="finished kedro runs' folders (seeds of one market): the first net's forecast added to each's")
    args = parser.parse_args()

    import numpy as np
    import polars as pl

    from _folds import market
    from atft_kedro.evaluation.baselines import tuned_lightgbm, tuned_ridge
    from atft_kedro.evaluation.metrics import daily_scores, difference_summary, overlap_lag

    data = market(args.params)
    model_input, names, cfg = data.model_input, data.names, data.cfg
    target, lag = f"target_{args.horizon}", overlap_lag(args.horizon)
    nets, seeds = args.losses.split(","), [int(s) for s in args.seeds.split(",")]

    def ensemble(predictors):
        def predict(x):
            forecasts = [p(x) for p in predictors]
            return np.mean([(f - f.mean()) / f.std() for f in forecasts], axis=0)

        return predict

    pooled, ensembles = {}, {}
    extra = [f"LightGBM seed {s}" for s in args.lightgbm_seeds.split(",") if s]
    print(f"| fold | {' | '.join(['ridge', 'LightGBM', *extra, *nets])} |  (validation / test RankIC, {args.horizon})")
    print("|---" * (3 + len(extra) + len(nets)) + "|")
    for fold, dates, rows, x in data.folds(target):
        train, val, test = rows["train"], rows["val"], rows["test"]
        scores, on_val = {}, {}
        coef, info = tuned_ridge(model_input, names, target, dates["train"], dates["val"], cfg)
        scores["ridge"], on_val["ridge"] = x["test"] @ coef[:-1], info["val_rank_ic"]
        booster, info = tuned_lightgbm(model_input, names, target, dates["train"], dates["val"], cfg)
        scores["LightGBM"], on_val["LightGBM"] = booster.predict(x["test"], num_iteration=booster.best_iteration), info["val_rank_ic"]
        for seed in [int(s) for s in args.lightgbm_seeds.split(",") if s]:
            reseeded = dataclasses.replace(cfg, lightgbm=dataclasses.replace(cfg.lightgbm, seed=seed))
            other, info = tuned_lightgbm(model_input, names, target, dates["train"], dates["val"], reseeded)
            scores[f"LightGBM seed {seed}"] = other.predict(x["test"], num_iteration=other.best_iteration)
            on_val[f"LightGBM seed {seed}"] = info["val_rank_ic"]
        for name in nets:
            loss, _, start = name.partition(":")
            predictors, vals = [], []
            for seed in seeds:
                predict, val_score, _ = fit_net(x["train"], train[target].to_numpy(), train["Date"].to_numpy(), x["val"],
                                                val[target].to_numpy(), val["Date"].to_numpy(), loss, seed,
                                                coef if start == "ridge" else None, cfg.min_stocks)  # fmt: skip
                predictors.append(predict)
                vals.append(val_score)
            ensembles.setdefault(name, {})[fold] = ensemble(predictors)
            scores[name], on_val[name] = ensembles[name][fold](x["test"]), float(np.mean(vals))
        cells = []
        for name, score in scores.items():
            per_date = daily_scores(test.with_columns(pl.Series("score", score)), "score", target, cfg.min_stocks).rank_ic
            pooled.setdefault(name, []).append(per_date)
            cells.append(f"{on_val[name]:.4f} / {per_date.mean():.4f}")
        print(f"| {fold} | " + " | ".join(cells) + " |", flush=True)

    lightgbm = np.concatenate(pooled["LightGBM"])
    print(f"\n| forecaster | test RankIC ({args.horizon}), pooled | minus LightGBM | 95% interval | dates |\n|---|---|---|---|---|")
    for name, blocks in pooled.items():
        series = np.concatenate(blocks)
        d = difference_summary(series - lightgbm, lag)
        print(f"| {name} | {series.mean():.4f} | {d['mean']:+.4f} | [{d['ci95_low']:+.4f}, {d['ci95_high']:+.4f}] | {d['dates']} |")
    for run in args.run:
        print(f"\n{run}:")
        added_to_run(Path(run), ensembles[nets[0]], nets[0], model_input, names, target, lag, cfg.min_stocks)


def added_to_run(run: Path, nets: dict, net_name: str, model_input, names: list[str], target: str, lag: int, min_stocks: int) -> None:
    """The run's forecast plus w times the net's (each z-scored per date; walk-forward: each fold's
    rows and that fold's net, ``nets`` by fold): validation and test RankIC per w, and the paired
    difference to the run's own forecast at the w each fold's validation block prefers."""
    import numpy as np
    import polars as pl

    from atft_kedro.evaluation.metrics import daily_scores, difference_summary

    pred = f"pred_{target.removeprefix('target_')}"

    def z(column: str) -> pl.Expr:
        return (pl.col(column) - pl.col(column).mean().over("Date")) / pl.col(column).std().over("Date")

    weights, daily = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0), {}  # daily[split][fold][w]: per-date RankICs
    for split, name in (("validation", "validation_predictions"), ("test", "predictions")):
        frame = pl.read_parquet(run / "data" / "07_model_output" / f"{name}.parquet")
        frame = frame if "fold" in frame.columns else frame.with_columns(pl.lit(0, pl.Int32).alias("fold"))
        daily[split] = {}
        for fold, net in nets.items():
            rows = (frame.filter(pl.col("fold") == fold).select("Date", "Code", pred)
                    .join(model_input.select("Date", "Code", *names, target), on=["Date", "Code"], how="left")
                    .filter(pl.col(target).is_finite()))  # fmt: skip
            rows = rows.with_columns(pl.Series("net", net(rows.select(names).fill_nan(0.0).fill_null(0.0).to_numpy())))
            rows = rows.with_columns(z(pred).alias("model"), z("net").alias("net"))
            daily[split][fold] = {}
            for w in weights:
                scored = rows.with_columns((pl.col("model") + w * pl.col("net")).alias("combined"))
                daily[split][fold][w] = daily_scores(scored, "combined", target, min_stocks).rank_ic

    def pooled(split: str, w_of_fold) -> np.ndarray:
        return np.concatenate([daily[split][fold][w_of_fold(fold)] for fold in nets])

    print(f"\n| the run's forecast + w x {net_name} | " + " | ".join(f"w = {w}" for w in weights) + " |")
    print("|---" * (len(weights) + 1) + "|")
    for split in daily:
        print(f"| {split} | " + " | ".join(f"{pooled(split, lambda _, w=w: w).mean():.4f}" for w in weights) + " |")
    chosen = {fold: max(weights, key=lambda w, f=fold: daily["validation"][f][w].mean()) for fold in nets}
    for split in daily:
        d = difference_summary(pooled(split, chosen.get) - pooled(split, lambda _: 0.0), lag)
        print(f"{split}: w = {chosen} (each fold's validation's choice) adds {d['mean']:+.4f} "
              f"[{d['ci95_low']:+.4f}, {d['ci95_high']:+.4f}] over {d['dates']} dates")  # fmt: skip


if __name__ == "__main__":
    main()
