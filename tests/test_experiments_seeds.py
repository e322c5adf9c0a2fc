"""experiments/seeds.py: two settings on the same seeds, paired per date."""

import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))


def _run(tmp_path: Path, name: str, seed: int, sign: float, rng) -> dict:
    """A run whose forecasts are ``sign`` times the 1-day target plus noise, on 30 dates of 40 stocks."""
    dates = np.repeat(np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-31")), 40)
    target = rng.normal(size=len(dates))
    frame = pl.DataFrame({"Date": dates, "Code": np.tile([f"{c:04d}" for c in range(40)], 30), "target_1d": target,
                          "pred_1d": sign * target + 0.5 * rng.normal(size=len(dates))})  # fmt: skip
    paths = {}
    for key in ("frame", "val_frame"):
        paths[key] = str(tmp_path / f"{name}_{seed}_{key}.parquet")
        frame.write_parquet(paths[key])
    return {"seed": seed, **paths}


def test_two_settings_are_compared_date_by_date_and_must_pair(tmp_path):
    import seeds

    rng = np.random.default_rng(0)
    good = [_run(tmp_path, "good", s, 1.0, rng) for s in (0, 1)]
    bad = [_run(tmp_path, "bad", s, -1.0, rng) for s in (0, 1)]
    table = seeds.settings_report(good, bad)
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| 1d")]
    assert len(rows) == 2  # validation and test; no beta or sector columns: no neutral table
    for row in rows:
        this, other, difference = float(row[1]), float(row[2]), float(row[3])
        assert this > 0.8 and other < -0.8
        assert difference == pytest.approx(this - other, abs=2e-4)
        low, high = (float(x) for x in row[4].strip("[]").split(", "))
        assert low < difference < high and low > 1.5
    with pytest.raises(SystemExit, match="as many runs"):
        seeds.settings_report(good, bad[:1])


def test_groups_are_compared_each_on_its_own_and_averaged(tmp_path):
    """``groups_report``: each group's difference is ``settings_report``'s for that group, the mean
    over groups is their mean (with an interval), the next its interval from the groups' spread (a
    t interval: wide where the groups disagree, as here), and the last column counts the groups
    below and above 0 beyond their intervals (here one clearly better group, one clearly worse, one
    a tie)."""
    import seeds

    rng = np.random.default_rng(1)
    up = ([_run(tmp_path, "up_a", 0, 1.0, rng)], [_run(tmp_path, "up_b", 0, -1.0, rng)])
    down = ([_run(tmp_path, "down_a", 0, -1.0, rng)], [_run(tmp_path, "down_b", 0, 1.0, rng)])
    same = _run(tmp_path, "same", 0, 1.0, rng)
    table = seeds.groups_report([up, down, ([same], [same])], ["up", "down", "tie"])
    assert "| horizon | up | down | tie | mean over groups |" in table
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| 1d")]
    assert len(rows) == 2  # validation and test
    single = [float(line.split(" | ")[3]) for line in seeds.settings_report(*up).splitlines() if line.startswith("| 1d")]
    for row, alone in zip(rows, single):
        means = [float(cell.split(" [")[0]) for cell in row[1:4]]
        assert means[0] == pytest.approx(alone, abs=1e-4) and means[0] > 1.5 and means[1] < -1.5 and means[2] == 0
        assert float(row[4]) == pytest.approx(np.mean(means), abs=2e-4)
        low, high = (float(v) for v in row[5].strip("[]").split(", "))
        assert low < float(row[4]) < high  # the groups' independent intervals combined
        t_low, t_high = (float(v) for v in row[6].strip("[]").split(", "))
        half = 4.303 * np.std(means, ddof=1) / np.sqrt(3)  # t at 2 degrees of freedom
        assert t_low == pytest.approx(np.mean(means) - half, abs=1e-3) and t_high == pytest.approx(np.mean(means) + half, abs=1e-3)
        assert t_low < low and t_high > high  # the groups disagree by far more than their dates' noise
        assert row[7].strip(" |") == "1 / 1"


def test_long_horizons_switch_to_the_1d_forecast_only_where_validation_prefers_it(tmp_path, monkeypatch, capsys):
    """experiments/long_from_1d.py: per run and horizon, the 1-day forecast replaces the horizon's
    own forecast in both frames when it ranks the horizon's returns higher on validation; the
    runs' own files are left as they were."""
    import json

    import long_from_1d

    rng = np.random.default_rng(1)
    dates = np.repeat(np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-31")), 40)
    runs = []
    for seed in (0, 1):
        paths = {}
        for key in ("frame", "val_frame"):
            five, ten = rng.normal(size=len(dates)), rng.normal(size=len(dates))
            frame = pl.DataFrame({"Date": dates, "Code": np.tile([f"{c:04d}" for c in range(40)], 30), "target_1d": five,
                                  "pred_1d": five + 0.5 * rng.normal(size=len(dates)),  # ranks the 5-day returns well
                                  "target_5d": five, "pred_5d": rng.normal(size=len(dates)),  # its own head: noise
                                  "target_10d": ten, "pred_10d": ten + 0.5 * rng.normal(size=len(dates)),  # its own head ranks well
                                  "target_20d": ten, "pred_20d": ten})  # fmt: skip
            paths[key] = str(tmp_path / f"run{seed}_{key}.parquet")
            frame.write_parquet(paths[key])
        runs.append({"seed": seed, **paths})
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    before = {r["frame"]: pl.read_parquet(r["frame"]) for r in runs}
    monkeypatch.setattr(sys, "argv", ["long_from_1d.py", "--runs", str(tmp_path / "runs.json"), "--out", str(tmp_path / "out")])
    long_from_1d.main()
    out = capsys.readouterr().out
    switched = json.loads((tmp_path / "out" / "runs.json").read_text())
    for run, mine in zip(runs, switched):
        for key in ("frame", "val_frame"):
            new, old = pl.read_parquet(mine[key]), pl.read_parquet(run[key])
            assert new["pred_5d"].equals(old["pred_1d"]) and new["pred_10d"].equals(old["pred_10d"]) and new["pred_20d"].equals(old["pred_20d"])
        assert pl.read_parquet(run["frame"]).equals(before[run["frame"]])  # the run's own file untouched
    assert out.count("| 5d | ") >= 2 and "1-day forecast |" in out and "own head |" in out
    five = [line.split(" | ") for line in out.splitlines() if line.startswith("| 5d |")][-1]  # the test split's paired row
    assert float(five[3]) > 0.5  # the switch lifts 5 days from about 0 to about 0.9
    # with a margin: the 5-day switch (a lead of many standard errors) clears one, and nothing clears a huge one
    for margin, switches in (("1", True), ("1e6", False)):
        monkeypatch.setattr(sys, "argv", ["long_from_1d.py", "--runs", str(tmp_path / "runs.json"), "--out", str(tmp_path / margin), "--margin", margin])
        long_from_1d.main()
        for run, mine in zip(runs, json.loads((tmp_path / margin / "runs.json").read_text())):
            new, old = pl.read_parquet(mine["frame"]), pl.read_parquet(run["frame"])
            assert new["pred_5d"].equals(old["pred_1d" if switches else "pred_5d"]) and new["pred_10d"].equals(old["pred_10d"])


def test_a_walk_forward_seed_scores_each_test_block_by_its_own_fold(tmp_path, two_fold_run, monkeypatch, caplog):
    """``run_seed`` with ``splits.n_folds`` 2: the test frame holds both folds' test blocks (each
    predicted by its fold's checkpoint, which exists only while the run's store does), and so does
    the validation frame with both folds' validation blocks; the phases' scores are the last fold's.
    Its training is the pipeline's: its store starts as the pipeline's run of the same settings
    (``two_fold_run``) stopped before fold 1's last phase ended, and keeps the seven phases before."""
    import contextlib
    import tempfile
    from types import SimpleNamespace

    import seeds

    from atft_kedro.features.splits import split_dates
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory

    from .conftest import TINY_EVALUATION, WALK_FORWARD_PARAMS, stopped_in_its_last_phase

    @contextlib.contextmanager
    def the_pipelines_run_stopped():
        with tempfile.TemporaryDirectory() as tmp:
            stopped_in_its_last_phase(two_fold_run[2], tmp)
            yield tmp

    monkeypatch.setattr(seeds, "tempfile", SimpleNamespace(TemporaryDirectory=the_pipelines_run_stopped))
    overrides = {**WALK_FORWARD_PARAMS, "evaluation": TINY_EVALUATION}
    with caplog.at_level("INFO"):
        row = seeds.run_seed(0, overrides, tmp_path)
    kept = ", ".join([f"fold 0 phase {p}" for p in range(4)] + [f"fold 1 phase {p}" for p in range(3)])
    assert f"{kept} finished before, kept" in caplog.text
    splits = run_in_memory(["data_engineering"], project_parameters(overrides))["splits"]
    test, val = pl.read_parquet(row["frame"]), pl.read_parquet(row["val_frame"])
    blocks = [set(split_dates(splits, "test", fold).to_list()) for fold in (0, 1)]
    assert set(test["Date"]) == blocks[0] | blocks[1] and not blocks[0] & blocks[1]
    assert all(test.filter(pl.col("Date").is_in(list(b)))["pred_1d"].is_not_null().all() for b in blocks)
    for fold in (0, 1):  # each validation block by its own fold's model
        assert set(val.filter(pl.col("fold") == fold)["Date"]) == set(split_dates(splits, "val", fold).to_list())
    assert set(row["metrics"]["folds"]) == {"fold0", "fold1"} and set(row["phase_val"]) == {"0", "1", "2", "3"}


def test_the_model_is_set_against_the_baseline_validation_picks(tmp_path):
    """``validation_pick`` reads the runs' recorded validation RankIC, walk-forward fold by fold;
    ``against_best`` then pairs the model with that baseline (each fold's rows with its fold's), not
    with the best on test; runs recorded without every baseline's validation score give None, runs
    that disagree stop."""
    import seeds

    rng = np.random.default_rng(1)
    run = _run(tmp_path, "m", 0, 1.0, rng)
    frame = pl.read_parquet(run["frame"])
    target = frame["target_1d"].to_numpy()
    scores = {"momentum_20d": 0.2, "reversal_1d": 0.9, "ridge": 0.1, "lightgbm": -0.5}  # reversal best on test
    frame = frame.with_columns(pl.Series(c if c in ("momentum_20d", "reversal_1d") else f"{c}_1d", w * target + rng.normal(size=len(target)))
                               for c, w in scores.items())  # fmt: skip
    on_val = {"momentum_20d": 0.05, "reversal_1d": 0.01, "ridge": 0.04, "lightgbm": 0.03}
    run["metrics"] = {"baselines": {b: {"1d": {"val_rank_ic": v}} for b, v in on_val.items()}}
    assert seeds.validation_pick([run], "1d") == {None: "momentum_20d"}
    best, picked = seeds.against_best([frame], "1d", False), seeds.against_best([frame], "1d", False, {None: "momentum_20d"})
    assert best["best"] == "reversal_1d" and picked["best"] == "momentum_20d"
    assert picked["baseline"] == pytest.approx(picked["baselines"]["momentum_20d"])
    assert picked["mean"] == pytest.approx(picked["per_seed"][0] - picked["baselines"]["momentum_20d"], abs=1e-9)
    assert picked["mean"] > best["mean"]
    # walk-forward: the first 15 dates are fold 0's block (ridge picked there), the rest fold 1's (momentum)
    folds = {"fold0": {**on_val, "ridge": 0.09}, "fold1": on_val}
    walk = {"metrics": {"baselines": {b: {"1d": {f: {"val_rank_ic": v[b]} for f, v in folds.items()}} for b in on_val}}}
    pick = seeds.validation_pick([walk], "1d")
    assert pick == {0: "ridge", 1: "momentum_20d"} and seeds.pick_name(pick) == "fold0 ridge, fold1 momentum_20d"
    days = frame["Date"].unique().sort()
    split = frame.with_columns(pl.when(pl.col("Date").is_in(days[:15].implode())).then(0).otherwise(1).alias("fold"))
    mixed = seeds.against_best([split], "1d", False, pick)
    by_hand = [seeds._daily(split.filter(pl.col("fold") == f), c, "target_1d", False) for f, c in ((0, "ridge_1d"), (1, "momentum_20d"))]
    assert mixed["baseline"] == pytest.approx(np.mean([*by_hand[0].values(), *by_hand[1].values()]))
    assert seeds.validation_pick([{"metrics": {"baselines": {"ridge": {}, "lightgbm": {}}}}], "1d") is None
    other = {"metrics": {"baselines": {**run["metrics"]["baselines"], "reversal_1d": {"1d": {"val_rank_ic": 0.09}}}}}
    with pytest.raises(SystemExit, match="different markets"):
        seeds.validation_pick([run, other], "1d")


def test_the_blend_table_pairs_the_blend_with_the_model_and_lightgbm_per_date():
    """``blend_lines``: per horizon the blend's test RankIC per seed, and the blend minus the model
    (each date averaged over the seeds) and minus LightGBM, with their intervals, raw and with sector
    means and beta out; runs saved before the evaluation scored the blend give no table."""
    import seeds

    rng = np.random.default_rng(4)
    dates = np.repeat(np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-31")), 40)
    target = rng.normal(size=len(dates))
    frames = []
    for _ in range(2):
        model = target + 1.0 * rng.normal(size=len(dates))
        frames.append(pl.DataFrame({"Date": dates, "Code": np.tile([f"{c:04d}" for c in range(40)], 30), "target_1d": target, "pred_1d": model,
                                    "lightgbm_1d": rng.normal(size=len(dates)), "blend_1d": model + 0.1 * target,
                                    "beta_60d": rng.normal(1.0, 0.3, size=len(dates)), "Sector33Code": np.tile(["1", "2"], len(dates) // 2)}))  # fmt: skip
    assert seeds.blend_lines([f.drop("blend_1d") for f in frames]) == []
    rows = [line.split(" | ") for line in seeds.blend_lines(frames) if line.startswith("| 1d")]
    assert [r[1] for r in rows] == ["raw", "sector means and beta out"]
    assert "nan" not in " | ".join(rows[1][2:])  # each date's returns less its sector means and beta part: scored too
    raw = rows[0]
    each = [seeds._daily(f, "blend_1d", "target_1d", False) for f in frames]
    assert [float(x) for x in raw[2].split(", ")] == pytest.approx([np.mean(list(d.values())) for d in each], abs=1e-4)
    model = np.mean([np.mean(list(seeds._daily(f, "pred_1d", "target_1d", False).values())) for f in frames])
    lightgbm = np.mean(list(seeds._daily(frames[0], "lightgbm_1d", "target_1d", False).values()))
    assert float(raw[4]) == pytest.approx(float(raw[3]) - model, abs=2e-4) and float(raw[5].strip("[]").split(", ")[0]) > 0
    assert float(raw[6]) == pytest.approx(float(raw[3]) - lightgbm, abs=2e-4) and float(raw[7].strip("[] |").split(", ")[0]) > 0


@pytest.mark.slow  # a research script's full training with every state kept (24 s); the --project mode runs by default
def test_each_horizon_can_take_the_state_validation_ranks_best(tmp_path, monkeypatch, capsys):
    """``run_seed`` with ``states`` keeps every state training validated (each phase's start and
    epochs) and writes their forecasts; ``per_horizon_best.py`` then gives each horizon the state
    with the best validation RankIC there, whose forecasts the switched frames carry, and the run's
    own model is one of the states (checked inside the script, to the forecast)."""
    import json

    import per_horizon_best
    import seeds

    from .conftest import TINY_EVALUATION, TINY_PARAMS, WALK_FORWARD_TRAINING

    overrides = {**TINY_PARAMS, "training": {**WALK_FORWARD_TRAINING, "epochs": 2, "patience": 1}, "evaluation": {**TINY_EVALUATION, "importance_dates": 0}}
    row = seeds.run_seed(0, overrides, tmp_path, states=True)
    tags = row["states"]["tags"]
    assert {"p0start", "p0e0", "p0e1", "p3e0"} <= set(tags) and row["states"]["final"] in tags
    (tmp_path / "runs.json").write_text(json.dumps([row]))
    monkeypatch.setattr(sys, "argv", ["per_horizon_best.py", "--runs", str(tmp_path / "runs.json"), "--out", str(tmp_path / "out")])
    per_horizon_best.main()
    out = capsys.readouterr().out
    assert "### validation's later half" in out and "### test, chosen on the whole of validation" in out
    switched = json.loads((tmp_path / "out" / "runs.json").read_text())[0]
    states_val, states_test = pl.read_parquet(row["states"]["val_frame"]), pl.read_parquet(row["states"]["frame"])
    val, test = pl.read_parquet(switched["val_frame"]), pl.read_parquet(switched["frame"])
    for h, tag in switched["chosen"].items():
        assert test[f"pred_{h}"].equals(states_test[f"pred_{h}@{tag}"].alias(f"pred_{h}"))
        score = lambda t: np.mean(list(seeds._daily(states_val, f"pred_{h}@{t}", f"target_{h}", False).values()))  # noqa: E731
        assert all(score(tag) >= score(t) for t in tags if f"pred_{h}@{t}" in states_val.columns)  # the best on validation
        assert val[f"pred_{h}"].equals(states_val[f"pred_{h}@{tag}"].alias(f"pred_{h}"))


def test_finished_runs_are_scored_beside_the_baselines_once(tmp_path):
    """``--scored``: finished kedro runs' forecasts (their data directories) become rows that
    ``report`` pools, every run beside the same baselines, each under its own training seed; a run
    of other data is refused with what to do."""
    import json

    import seeds
    from atft_kedro.pipelines.evaluation.nodes import split_dates
    from atft_kedro.pipelines.in_memory import project_parameters, run_in_memory
    from .conftest import TINY_EVALUATION, TINY_PARAMS

    overrides = {**TINY_PARAMS, "evaluation": TINY_EVALUATION}
    out = run_in_memory(["data_engineering"], project_parameters(overrides))
    rng = np.random.default_rng(0)
    targets = [f"target_{h}" for h in ("1d", "5d", "10d", "20d")]

    def forecasts(split: str, sign: float) -> pl.DataFrame:
        rows = out["model_input"].filter(pl.col("Date").is_in(split_dates(out["splits"], split, fold=None).implode()))
        rows = rows.select("Date", "Code", *targets).drop_nulls("target_1d")
        return rows.with_columns(*(pl.Series(f"pred_{t[7:]}", sign * rows[t].fill_null(0).to_numpy() + 1e-3 * rng.normal(size=rows.height))
                                   for t in targets))  # fmt: skip

    runs = []
    for seed, sign in ((3, 1.0), (4, -1.0)):
        run = tmp_path / f"run{seed}"
        (run / "07_model_output").mkdir(parents=True)
        (run / "08_reporting").mkdir()
        forecasts("test", sign).write_parquet(run / "07_model_output" / "predictions.parquet")
        forecasts("test", 0.0).write_parquet(run / "07_model_output" / "random_graph_predictions.parquet")
        forecasts("val", sign).write_parquet(run / "07_model_output" / "validation_predictions.parquet")
        provenance = {"data": {"id": out["data_fingerprint"]["id"]}, "model": {"seed": seed}}
        (run / "08_reporting" / "metrics.json").write_text(json.dumps({"provenance": provenance}))
        runs.append(run)
    frames = tmp_path / "frames"
    frames.mkdir()
    rows = seeds.scored_runs(runs, overrides, frames)
    assert [r["seed"] for r in rows] == [3, 4]
    a, b = (pl.read_parquet(r["frame"]) for r in rows)
    assert {"lightgbm_1d", "ridge_1d", "momentum_20d", "beta_60d", "Sector33Code"} <= set(a.columns)
    assert a["lightgbm_1d"].equals(b["lightgbm_1d"]) and not a["pred_1d"].equals(b["pred_1d"])
    table = seeds.report(rows)
    first = next(line for line in table.splitlines() if line.startswith("| 1d"))
    per_seed = [float(x) for x in first.split(" | ")[1].split(", ")]
    assert per_seed[0] > 0.5 and per_seed[1] < -0.5  # each run's own forecasts, signs as made
    assert "finished runs, scored again" in table

    with pytest.raises(SystemExit, match="a second run of training seed 3"):
        seeds.scored_runs([runs[0], runs[0]], overrides, frames)
    (runs[1] / "08_reporting" / "metrics.json").write_text(json.dumps({"provenance": {"data": {"id": "other"}}}))
    with pytest.raises(SystemExit, match="run on other data .* give the run's own --params"):
        seeds.scored_runs(runs, overrides, frames)


def test_neutralised_forecasts_hold_no_sector_or_beta_bet_and_lift_a_forecast_that_made_one(tmp_path):
    """``neutralised_forecasts`` leaves every scorer's forecast with each date's sector means at 0 and
    no slope on beta within sectors; a model whose forecast carries a sector bet the neutral returns
    do not reward ranks them better once it is out (``markets_report --neutralised``), and runs
    scored without beta and sector stop with a clear error."""
    import seeds

    rng = np.random.default_rng(3)
    n_dates, n_stocks = 30, 40
    dates = np.repeat(np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-01") + n_dates), n_stocks)
    sector = np.tile(np.arange(n_stocks) % 4, n_dates)
    beta = np.tile(rng.uniform(0.5, 1.5, n_stocks), n_dates)
    signal = rng.normal(size=len(dates))
    bet = rng.normal(size=(n_dates, 4))[np.repeat(np.arange(n_dates), n_stocks), sector]  # a sector bet per date, unrewarded
    target = signal + 2.0 * rng.normal(size=len(dates))
    frame = pl.DataFrame({"Date": dates, "Code": np.tile([f"{c:04d}" for c in range(n_stocks)], n_dates), "beta_60d": beta,
                          "Sector33Code": sector.astype(str), "target_1d": target, "pred_1d": signal + 3.0 * bet,
                          **{c: 0.5 * signal + rng.normal(size=len(dates)) for c in ("ridge_1d", "lightgbm_1d", "momentum_20d", "reversal_1d")}})  # fmt: skip
    out = seeds.neutralised_forecasts(frame)
    for c in ("pred_1d", "ridge_1d", "momentum_20d"):
        within = out.with_columns((pl.col("beta_60d") - pl.col("beta_60d").mean().over("Date", "Sector33Code")).alias("b_in"))
        assert within.group_by("Date", "Sector33Code").agg(pl.col(c).mean())[c].abs().max() < 1e-9
        assert within.group_by("Date").agg((pl.col(c) * pl.col("b_in")).sum())[c].abs().max() < 1e-9
    assert out["target_1d"].equals(frame["target_1d"])  # the returns are the evaluation's to neutralise, not this
    path = tmp_path / "frame.parquet"
    frame.write_parquet(path)
    run = [{"seed": 0, "frame": str(path), "metrics": {}}]

    def neutral_1d(table: str) -> float:
        part = table.split("sector means and beta out of the returns")[1]
        return float(next(line for line in part.splitlines() if line.startswith("| 1d")).split(" | ")[1].split(" [")[0])

    plain, neutralised = seeds.markets_report([run]), seeds.markets_report([run], neutralised=True)
    assert neutralised.startswith("markets: 0: seeds [0]\nevery forecast with its date's sector means and beta part out")
    assert neutral_1d(neutralised) > neutral_1d(plain) + 0.1
    frame.drop("Sector33Code").write_parquet(path)
    with pytest.raises(SystemExit, match="--neutralised needs the frames' beta_60d and Sector33Code"):
        seeds.markets_report([run], neutralised=True)


def test_the_model_is_set_against_each_baseline_without_a_selection(tmp_path):
    """``markets_report`` also sets the model against each baseline on its own (no choice among them
    after test is read): per baseline the markets' mean of the paired difference and its interval,
    the same mean as the model's daily RankIC less that baseline's, market by market."""
    import seeds

    rng = np.random.default_rng(5)
    n_dates, n_stocks = 30, 40
    dates = np.repeat(np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-01") + n_dates), n_stocks)
    runs, expected = [], {b: [] for b in seeds.BASELINES}
    for market, strengths in enumerate(((0.8, 0.1, 0.4, 0.2), (0.6, 0.3, 0.5, 0.0))):
        signal = rng.normal(size=len(dates))
        frame = pl.DataFrame({"Date": dates, "Code": np.tile([f"{c:04d}" for c in range(n_stocks)], n_dates),
                              "beta_60d": np.tile(rng.uniform(0.5, 1.5, n_stocks), n_dates), "Sector33Code": np.tile(np.arange(n_stocks) % 4, n_dates).astype(str),
                              "target_1d": signal + rng.normal(size=len(dates)), "pred_1d": 0.5 * signal + rng.normal(size=len(dates)),
                              **{c: s * signal + rng.normal(size=len(dates)) for c, s in zip(("momentum_20d", "reversal_1d", "ridge_1d", "lightgbm_1d"), strengths)}})  # fmt: skip
        path = tmp_path / f"market{market}.parquet"
        frame.write_parquet(path)
        runs.append([{"seed": 0, "frame": str(path), "metrics": {}}])
        model = seeds._daily(frame, "pred_1d", "target_1d", False)
        for b, c in zip(seeds.BASELINES, ("momentum_20d", "reversal_1d", "ridge_1d", "lightgbm_1d")):
            base = seeds._daily(frame, c, "target_1d", False)
            expected[b].append(np.mean([model[d] - base[d] for d in model]))
    table = seeds.markets_report(runs)
    part = table.split("### model - each baseline, the markets' mean and 95% interval, test RankIC\n")[1]
    assert part.splitlines()[1] == "| horizon | " + " | ".join(f"{b} | 95% interval" for b in seeds.BASELINES) + " |"
    cells = next(line for line in part.splitlines() if line.startswith("| 1d")).split(" | ")[1:]
    for i, b in enumerate(seeds.BASELINES):
        low, high = (float(x) for x in cells[2 * i + 1].strip(" |[]").split(", "))
        assert abs(float(cells[2 * i]) - np.mean(expected[b])) < 1e-4 and low < float(cells[2 * i]) < high
    assert float(cells[0]) < 0 < float(cells[2])  # momentum planted stronger than the model, reversal weaker
    first = next(line for line in table.splitlines() if line.startswith("| 1d")).split(" | ")  # model - best on test, per market
    each = [float(c.split(" [")[0]) for c in first[1:3]]
    t_low, t_high = (float(v) for v in first[5].strip("[]").split(", "))
    half = 12.706 * np.std(each, ddof=1) / np.sqrt(2)  # t at 1 degree of freedom: two markets
    assert t_low == pytest.approx(np.mean(each) - half, abs=1e-3) and t_high == pytest.approx(np.mean(each) + half, abs=1e-3)


def test_parameters_a_run_would_refuse_stop_the_script_before_any_seed_starts(tmp_path, monkeypatch, capsys):
    import seeds

    monkeypatch.setattr(sys, "argv", ["seeds.py", "--seeds", "0", "--mlflow", "", "--out", str(tmp_path / "runs.json"),
                                      "--params", '{"training": {"lr": -1}}'])  # fmt: skip
    monkeypatch.setattr(seeds.subprocess, "run", lambda *a, **k: pytest.fail("a seed started"))
    with pytest.raises(SystemExit) as stopped:
        seeds.main()
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "seeds.py: error: --params: Parameter validation failed" in err and "training lr is the learning rate" in err
