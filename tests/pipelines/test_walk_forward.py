"""Walk-forward: with splits.n_folds > 1 every fold is trained on its own window, with its own
market-context scaling, and scored on its own test block; the metrics pool the blocks."""

import numpy as np
import polars as pl

from atft_kedro.training.checkpoints import CheckpointStore

from ..conftest import stopped_in_its_last_phase


def test_two_folds_are_trained_and_scored_in_turn(two_fold_run, tmp_path, monkeypatch):
    """The run of all four pipelines (the ``two_fold_run`` fixture: the tiny market, splits.n_folds 2)."""
    out, params, root = two_fold_run
    store = CheckpointStore(root)
    splits = out["splits"]
    for fold in (0, 1):
        assert all(store.fold(fold).exists(p, "best") for p in range(4))
    assert (root / "fold1/phase3/best.pt").exists() and not (root / "fold0").exists()

    # the model is the last fold's (the most recent data); each fold trained up to its own purge
    model = out["model"]
    assert model["best"] == store.fold(1).load(3, "best")["best"]
    history = out["training_history"]
    assert set(history["fold"]) == {0, 1}

    # every fold's test block scored by that fold's checkpoint; together they are all the test dates
    predictions = out["predictions"]
    for fold in (0, 1):
        test = set(splits.filter((pl.col("fold") == fold) & (pl.col("split") == "test"))["Date"])
        assert set(predictions.filter(pl.col("fold") == fold)["Date"]) <= test and len(test) > 0
        train_end = splits.filter((pl.col("fold") == fold) & (pl.col("split") == "train"))["Date"].max()
        assert train_end < min(test)
    metrics = out["metrics"]
    assert set(metrics["folds"]) == {"fold0", "fold1"}
    assert set(metrics["baselines"]["ridge"]["1d"]) == {"fold0", "fold1"}  # refitted on each fold's window
    per_fold = [metrics["folds"][f]["1d"]["model"] for f in ("fold0", "fold1")]
    assert all(v is not None for v in per_fold) and metrics["horizons"]["1d"]["model"]["rank_ic"] is not None
    # each block set against the baseline its own fold's validation picks, never a later fold's
    for h in ("1d", "20d"):
        pick = metrics["validation_pick"][h]
        for f in ("fold0", "fold1"):
            on_val = {b: metrics["baselines"][b][h][f]["val_rank_ic"] for b in ("momentum_20d", "reversal_1d", "ridge", "lightgbm")}
            on_val = {b: -1.0 if v is None else v for b, v in on_val.items()}
            assert pick["folds"][f]["baseline"] == max(on_val, key=on_val.get)
        names = {q["baseline"] for q in pick["folds"].values()}
        assert pick["baseline"] == (names.pop() if len(names) == 1 else "per fold") and pick["dates"] > 0
    # the picks' pooled test RankIC is the blocks' RankIC of each block's own pick, weighed by its dates
    pick = metrics["validation_pick"]["1d"]
    dated = predictions.filter(pl.col("target_1d").is_not_null()).group_by("fold").agg(pl.col("Date").n_unique().alias("n"))
    n = dict(zip(dated["fold"].to_list(), dated["n"].to_list()))
    blocks = [(n[f], metrics["folds"][f"fold{f}"]["1d"][pick["folds"][f"fold{f}"]["baseline"]]) for f in (0, 1)]
    assert pick["dates"] == sum(k for k, _ in blocks)
    assert abs(pick["rank_ic"] - sum(k * v for k, v in blocks) / pick["dates"]) < 1e-5
    # the report has each block's row beside the pooled tables
    report = out["evaluation_report"]
    assert "## Each walk-forward test block" in report and "| horizon | scorer | fold0 | fold1 |" in report
    assert f"| 1d | model | {per_fold[0]:.4f} | {per_fold[1]:.4f} |" in report
    # the feature importance on each fold's last 3 validation dates (evaluation.importance_dates), by that fold's model
    importance = metrics["feature_importance"]
    assert importance["dates"] == 6 and all(g["1d"]["worth"]["dates"] == 6 for g in importance["groups"].values())
    assert "(on 6 validation dates)" in report

    # stopped in fold 1's last phase, run again: fold 0 is kept whole (its arrays are not even
    # rebuilt) and so are fold 1's first three phases; only fold 1's last phase is trained
    import atft_kedro.pipelines.training.nodes as nodes

    store = stopped_in_its_last_phase(root, tmp_path / "checkpoints")  # before the phase's first epoch ended

    def saved() -> list[int]:
        return [store.load(p, "last")["saved_ns"] for p in range(4)] + [store.fold(1).load(p, "last")["saved_ns"] for p in range(3)]

    kept_ns = saved()
    built, fold_arrays = [], nodes.fold_arrays
    monkeypatch.setattr(nodes, "fold_arrays", lambda arrays, splits, fold, *a: built.append(fold) or fold_arrays(arrays, splits, fold, *a))
    _, model = nodes.train_model(out["training_arrays"], out["graphs"], splits, out["feature_manifest"], store, "all",
                                 params["training"], out["data_fingerprint"], out["market_features"], params["normalisation"])  # fmt: skip
    assert built == [1] and saved() == kept_ns
    assert store.fold(1).load(3, "last")["finished"] and model["best"] == store.fold(1).load(3, "best")["best"]


def test_a_later_fold_has_its_own_market_context_scaling(tiny_pipeline):
    from atft_kedro.features.normalise import market_context_of_fold
    from atft_kedro.features.splits import SplitConfig, make_splits
    from atft_kedro.pipelines.training.nodes import build_training_arrays
    from atft_kedro.training.data import fold_arrays

    splits = make_splits(tiny_pipeline["panel"]["Date"], SplitConfig(n_folds=3))
    arrays = build_training_arrays(tiny_pipeline["model_input"], market_context_of_fold(tiny_pipeline["market_features"], splits, 0, 5.0),
                                   tiny_pipeline["feature_manifest"], {})  # fmt: skip
    fold0 = fold_arrays(arrays, splits, 0, tiny_pipeline["market_features"], {"clip": 5.0})
    fold2 = fold_arrays(arrays, splits, 2, tiny_pipeline["market_features"], {"clip": 5.0})
    assert fold0 is arrays and not np.allclose(fold2.market, arrays.market)
    train2 = np.isin(arrays.dates, splits.filter((pl.col("fold") == 2) & (pl.col("split") == "train"))["Date"].to_numpy())
    # fitted on fold 2's training dates: there each column has mean 0 (up to the clip and float32)
    column = np.asarray(fold2.market)[train2, 0]
    assert abs(column.mean()) < 0.05


def test_inference_after_a_walk_forward_run_scales_the_market_context_as_its_last_fold_trained(two_fold_run):
    """The model a walk-forward run keeps is its last fold's, trained with that fold's market-context
    scaling: inference ranks as that model scores the fold's own arrays on the last date."""
    import torch

    from atft_kedro.pipelines.in_memory import run_in_memory
    from atft_kedro.training.checkpoints import model_from_checkpoint
    from atft_kedro.training.config import TrainConfig
    from atft_kedro.training.data import DateDataset, fold_arrays
    from atft_kedro.training.predict import lean_on_one_day, predict

    from atft_kedro.inference import market_context_at

    out, params, _ = two_fold_run
    latest = run_in_memory(["inference"], params, inputs={k: out[k] for k in ("model", "splits", "graphs", "data_fingerprint")})
    (_, ranking), = latest["ranking_parquet"].items()
    model, last_fold = out["model"], int(out["splits"]["fold"].max())
    arrays = fold_arrays(out["training_arrays"], out["splits"], last_fold, out["market_features"], params["normalisation"])
    train = TrainConfig(**model["config"]["train"])
    slow = predict(model_from_checkpoint(model), DateDataset(arrays, out["graphs"], [len(arrays.dates) - 1], train.window), train, torch.device("cpu"))
    both = ranking.join(lean_on_one_day(slow, params["forecast"]["one_day_share"]), on="Code")
    assert last_fold == 1 and both.height == ranking.height
    for h in ("1d", "20d"):
        torch.testing.assert_close(both[f"score_{h}"].to_torch(), both[f"pred_{h}"].to_torch(), rtol=0, atol=1e-6)
    # the ranking barely moves with the market context (a date's one value for every stock); its scaling is checked itself
    context = market_context_at(out["market_features"], out["splits"], out["market_features"]["Date"].max(), params["normalisation"]["clip"])
    first = fold_arrays(out["training_arrays"], out["splits"], 0, out["market_features"], params["normalisation"])
    np.testing.assert_array_equal(context.drop("Date").to_numpy(), arrays.market)  # the last fold's scaling, every date
    assert np.abs(first.market - arrays.market).max() > 0.1  # fold 0's, which it used before, is another


def test_inference_on_a_training_date_scales_the_market_context_as_training_did(two_fold_run):
    """An as-of date among the kept fold's training dates is scaled with the statistics of all of
    them, as the model was trained: not with those of the training dates up to it."""
    from atft_kedro.features.splits import kept_fold, split_dates
    from atft_kedro.inference import market_context_at
    from atft_kedro.training.data import fold_arrays

    out, params, _ = two_fold_run
    fold = kept_fold(out["splits"])
    train = split_dates(out["splits"], "train", fold)
    as_of = train[len(train) // 2]
    context = market_context_at(out["market_features"], out["splits"], as_of, params["normalisation"]["clip"])
    arrays = fold_arrays(out["training_arrays"], out["splits"], fold, out["market_features"], params["normalisation"])
    assert context["Date"].max() == as_of
    np.testing.assert_array_equal(context.drop("Date").to_numpy(), arrays.market[: context.height])


def test_a_ranking_on_a_date_the_model_was_trained_on_is_said_to_be_in_sample(two_fold_run, caplog):
    import logging

    from atft_kedro.features.splits import kept_fold, split_dates
    from atft_kedro.pipelines.in_memory import run_in_memory

    out, params, _ = two_fold_run
    inputs = {k: out[k] for k in ("model", "splits", "graphs", "data_fingerprint")}
    val = split_dates(out["splits"], "val", kept_fold(out["splits"]))
    for as_of, in_sample in ((val[len(val) // 2], True), (None, False)):  # a validation date; the data's last
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="atft_kedro.inference"):
            run_in_memory(["inference"], {**params, "inference": {**params["inference"], "as_of": as_of and str(as_of)}}, inputs=inputs)
        said = [r.getMessage() for r in caplog.records if "in-sample" in r.getMessage()]
        assert len(said) == in_sample, said
        if in_sample:
            assert said[0].startswith(f"{as_of} is among the dates the model was trained or chosen on ")
