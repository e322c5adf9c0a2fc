"""The model and LightGBM blended (evaluation/blend.py): the weight chosen on validation alone."""

import datetime as dt

import numpy as np
import polars as pl
import pytest
from scipy import stats

from atft_kedro.evaluation.blend import blend

D0 = dt.date(2024, 1, 1)
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _split(rng, first_day: int, n_dates: int, n_stocks: int, model_noise: float, lightgbm_noise: float, fold=None) -> pl.DataFrame:
    """Returns, and two forecasts of them that each see a different half of what drives them."""
    day = np.repeat(np.arange(first_day, first_day + n_dates), n_stocks)
    a, b, e = rng.normal(size=(3, len(day)))
    frame = pl.DataFrame({"Date": [D0 + dt.timedelta(days=int(d)) for d in day], "Code": np.tile([f"{i:04d}" for i in range(n_stocks)], n_dates),
                          "target_1d": a + b + e, "pred_1d": 100.0 * (a + model_noise * rng.normal(size=len(day))),  # another scale
                          "lightgbm_1d": b + lightgbm_noise * rng.normal(size=len(day))})  # fmt: skip
    return frame if fold is None else frame.with_columns(pl.lit(fold, pl.Int32).alias("fold"))


def _mean_rank_ic(frame: pl.DataFrame, score: np.ndarray) -> float:
    f = frame.with_columns(pl.Series("s", score))
    return float(np.mean([stats.spearmanr(g["s"], g["target_1d"])[0] for _, g in f.group_by("Date")]))


def test_two_forecasts_of_different_halves_blend_evenly_and_one_alone_is_kept_alone():
    """Each forecast sees one of the two equal parts of the returns: validation prefers the even blend,
    which ranks test above both. Where LightGBM is noise, the model is kept alone (weight 0). The test
    rows' targets are never read, and the blend of the chosen weight is the rank normal scores' mix."""
    rng = np.random.default_rng(0)
    val, test = _split(rng, 0, 30, 60, 0.3, 0.3), _split(rng, 30, 30, 60, 0.3, 0.3)
    out, chosen = blend(test.drop("target_1d"), val, "1d", WEIGHTS, min_stocks=20)
    assert chosen["weight"] == 0.5 and set(chosen["val_rank_ic_by_weight"]) == {str(w) for w in WEIGHTS}
    assert chosen["val_rank_ic"] == max(chosen["val_rank_ic_by_weight"].values())
    blended, model, lightgbm = (_mean_rank_ic(test, s) for s in (out, test["pred_1d"].to_numpy(), test["lightgbm_1d"].to_numpy()))
    assert blended > max(model, lightgbm) + 0.05
    # by hand: each date's ranks as normal scores, mixed half and half
    ranks = test.select(*[((pl.col(c).rank().over("Date") - 0.5) / pl.len().over("Date")).alias(c) for c in ("pred_1d", "lightgbm_1d")])
    expected = 0.5 * stats.norm.ppf(ranks["pred_1d"].to_numpy()) + 0.5 * stats.norm.ppf(ranks["lightgbm_1d"].to_numpy())
    np.testing.assert_allclose(out, expected, atol=1e-5)

    noise = _split(rng, 0, 30, 60, 0.3, 0.0).with_columns(pl.Series("lightgbm_1d", rng.normal(size=30 * 60)))
    out, chosen = blend(test, noise, "1d", WEIGHTS, min_stocks=20)
    assert chosen["weight"] == 0.0
    same = test.with_columns(pl.Series("out", out)).group_by("Date").agg(pl.corr("out", "pred_1d", method="spearman").alias("r"))
    assert same["r"].min() == pytest.approx(1.0)  # each date's order is the model's


def test_walk_forward_each_fold_chooses_on_its_own_validation_block():
    """Fold 0's validation favours LightGBM, fold 1's the model: each fold's test rows get their own
    fold's weight, in the test frame's row order."""
    rng = np.random.default_rng(1)
    val = pl.concat([_split(rng, 0, 25, 50, 5.0, 0.1, fold=0), _split(rng, 40, 25, 50, 0.1, 5.0, fold=1)])
    test = pl.concat([_split(rng, 70, 10, 50, 0.3, 0.3, fold=1), _split(rng, 25, 10, 50, 0.3, 0.3, fold=0)])  # fold 1's rows first
    out, chosen = blend(test, val, "1d", WEIGHTS, min_stocks=20)
    assert chosen["fold0"]["weight"] > 0.5 > chosen["fold1"]["weight"]
    fold0 = (test["fold"] == 0).to_numpy()
    lightgbm_leaning = stats.spearmanr(out[fold0], test["lightgbm_1d"].to_numpy()[fold0])[0]
    model_leaning = stats.spearmanr(out[~fold0], test["pred_1d"].to_numpy()[~fold0])[0]
    assert lightgbm_leaning > 0.9 and model_leaning > 0.9


def test_the_evaluation_scores_the_blend_beside_the_model_and_reports_it():
    """With the model's validation forecasts the evaluation adds ``blend`` to every table (raw and
    neutral), its section (the weight, the blend minus the model and minus LightGBM) and the report's;
    the model's comparisons stay the model's. Without them, or with no weights (the default), there is
    no blend."""
    from atft_kedro.evaluation.evaluate import EvaluationConfig, evaluate_predictions
    from atft_kedro.evaluation.report import markdown_report

    rng = np.random.default_rng(2)
    n_dates, n_stocks = 60, 60
    day = np.repeat(np.arange(n_dates), n_stocks)
    dates = [D0 + dt.timedelta(days=int(i)) for i in day]
    a, b = rng.normal(size=(2, len(day)))
    y = 0.01 * (a + b + 2.0 * rng.normal(size=len(day)))
    keys = {"Date": dates, "Code": np.tile([f"{i:04d}" for i in range(n_stocks)], n_dates)}
    features = pl.DataFrame({**keys, "ret_20d": rng.normal(size=len(day)), "ret_1d": rng.normal(size=len(day)), "beta_60d": np.ones(len(day))})
    model_input = pl.DataFrame({**keys, "Sector33Code": np.tile(["1", "2"], len(day) // 2), "f": b, "target_1d": y})
    splits = pl.DataFrame({"fold": 0, "Date": sorted(set(dates)), "split": ["train"] * 30 + ["val"] * 15 + ["test"] * 15})
    forecast = model_input.with_columns(pl.Series("pred_1d", a + 0.5 * rng.normal(size=len(day)))).select("Date", "Code", "pred_1d", "target_1d")
    test, val = (forecast.filter(pl.col("Date").is_in(splits.filter(pl.col("split") == s)["Date"].implode())) for s in ("test", "val"))
    cfg = EvaluationConfig(blend_weights=WEIGHTS)
    result = evaluate_predictions(test, test, features, model_input, pl.DataFrame(), splits, ["f"], cfg, val)
    doc = result.document
    assert "blend" in doc["horizons"]["1d"] and "blend" in doc["neutral"]["1d"]
    b = doc["blend"]["1d"]
    assert 0.0 < b["chosen"]["weight"] < 1.0
    scores = doc["horizons"]["1d"]
    assert b["minus_model"]["mean"] == pytest.approx(scores["blend"]["rank_ic"] - scores["model"]["rank_ic"], abs=1e-5)
    assert b["minus_lightgbm"]["mean"] == pytest.approx(scores["blend"]["rank_ic"] - scores["lightgbm"]["rank_ic"], abs=1e-5)
    assert scores["blend"]["rank_ic"] > max(scores["model"]["rank_ic"], scores["lightgbm"]["rank_ic"])
    assert doc["paired"]["1d"]["best_baseline"] != "blend"
    context = {"source": "synthetic", "n_dates": 15, "start": "a", "end": "b", "n_stocks": n_stocks, "quantile": 0.2, "cost_bp": 0}
    assert "## The model and LightGBM blended" in markdown_report(doc, result.counts, context)
    for without in (evaluate_predictions(test, test, features, model_input, pl.DataFrame(), splits, ["f"], cfg),
                    evaluate_predictions(test, test, features, model_input, pl.DataFrame(), splits, ["f"], EvaluationConfig(), val)):  # fmt: skip
        assert "blend" not in without.document and "blend" not in without.document["horizons"]["1d"]
        assert without.document["horizons"]["1d"]["lightgbm"] == scores["lightgbm"]  # LightGBM's test forecast is the same with or without


def test_the_blend_is_an_option_read_from_the_parameters():
    """``evaluation.blend``: false in conf/base (no blend); true blends with ``blend_weights``, and
    turns on from the command line (``--params evaluation.blend=true``)."""
    from atft_kedro.evaluation.evaluate import EvaluationConfig
    from atft_kedro.pipelines.in_memory import project_parameters

    params = project_parameters({})["evaluation"]
    assert params["blend"] is False and EvaluationConfig.from_params(params).blend_weights == ()
    assert EvaluationConfig.from_params({**params, "blend": True}).blend_weights == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert EvaluationConfig.from_params({**params, "blend": True, "blend_weights": [0, 0.5]}).blend_weights == (0.0, 0.5)


def test_walk_forward_evaluation_blends_each_fold_with_its_own_lightgbm_fit_and_validation():
    """Two folds, each with its own training, validation and test dates: the evaluation's blend of
    fold k's test rows is ``blend`` of fold k's validation rows forecast by fold k's LightGBM fit (the
    one that scores fold k's test rows), and the weights are reported per fold."""
    from atft_kedro.evaluation.baselines import BaselineConfig, bagged_lightgbm
    from atft_kedro.evaluation.evaluate import EvaluationConfig, evaluate_predictions
    from atft_kedro.features.splits import split_dates

    rng = np.random.default_rng(5)
    n_dates, n_stocks = 80, 50
    day = np.repeat(np.arange(n_dates), n_stocks)
    dates = [D0 + dt.timedelta(days=int(i)) for i in day]
    a, b = rng.normal(size=(2, len(day)))
    keys = {"Date": dates, "Code": np.tile([f"{i:04d}" for i in range(n_stocks)], n_dates)}
    features = pl.DataFrame({**keys, "ret_20d": rng.normal(size=len(day)), "ret_1d": rng.normal(size=len(day)), "beta_60d": np.ones(len(day))})
    model_input = pl.DataFrame({**keys, "Sector33Code": np.tile(["1", "2"], len(day) // 2), "f": b,
                                "target_1d": 0.01 * (a + b + 2.0 * rng.normal(size=len(day)))})  # fmt: skip
    every = sorted(set(dates))
    layout = {0: (every[:30], every[30:40], every[40:55]), 1: (every[:45], every[45:55], every[55:70])}  # fold -> train, val, test
    splits = pl.concat([pl.DataFrame({"fold": fold, "Date": d, "split": name}) for fold, parts in layout.items()
                        for name, d in zip(("train", "val", "test"), parts)])  # fmt: skip
    forecast = model_input.with_columns(pl.Series("pred_1d", a + 0.5 * rng.normal(size=len(day)))).select("Date", "Code", "pred_1d", "target_1d")

    def block(split: str) -> pl.DataFrame:
        return pl.concat([forecast.filter(pl.col("Date").is_in(split_dates(splits, split, f).implode())).with_columns(pl.lit(f, pl.Int32).alias("fold"))
                          for f in layout])  # fmt: skip

    test, val = block("test"), block("val")
    cfg = EvaluationConfig(blend_weights=WEIGHTS)
    result = evaluate_predictions(test, test, features, model_input, pl.DataFrame(), splits, ["f"], cfg, val)
    chosen = result.document["blend"]["1d"]["chosen"]
    assert set(chosen) == {"fold0", "fold1"}
    for fold in layout:
        train_dates, val_dates = (split_dates(splits, s, fold) for s in ("train", "val"))
        mine = val.filter(pl.col("fold") == fold)
        x = mine.join(model_input, on=["Date", "Code"], how="left", maintain_order="left").select("f").to_numpy()
        lightgbm, _ = bagged_lightgbm(model_input, ["f"], "target_1d", train_dates, val_dates, BaselineConfig(), x)
        rows = result.frame.filter(pl.col("fold") == fold)
        expected, picked = blend(rows, mine.with_columns(pl.Series("lightgbm_1d", lightgbm)), "1d", WEIGHTS, cfg.min_stocks)
        mine_chosen = picked[f"fold{fold}"]  # metrics.json rounds to 6 digits
        assert mine_chosen["weight"] == chosen[f"fold{fold}"]["weight"]
        assert mine_chosen["val_rank_ic_by_weight"] == pytest.approx(chosen[f"fold{fold}"]["val_rank_ic_by_weight"], abs=1e-6)
        np.testing.assert_allclose(rows["blend_1d"].to_numpy(), expected, atol=1e-6)
