import copy
import math
import os
import re

import numpy as np
import pytest
import torch

from atft_kedro.training.checkpoints import CheckpointStore
from atft_kedro.training.data import DateDataset, ResidentDates, collate_dates, split_indices
from atft_kedro.training.batches import date_order, make_loader, train_batches
from atft_kedro.training.distributed import Ranks, step_shares
from atft_kedro.training.loop import TrainingError, build_model, train_phase
from atft_kedro.training.predict import lean_on_one_day, predict

from .conftest import small_config


def _idx(prepared):
    a, s = prepared["arrays"], prepared["splits"]
    return split_indices(a, s, "train"), split_indices(a, s, "val")[:15]


def _train(prepared, store, phase=0, **kw):
    train_idx, val_idx = _idx(prepared)
    cfg = small_config(**{k: v for k, v in kw.items() if k != "on_epoch_end"})
    return train_phase(phase, prepared["arrays"], prepared["graphs"], train_idx, val_idx, cfg, store,
                       prepared["manifest"], on_epoch_end=kw.get("on_epoch_end"), progress=False)  # fmt: skip


def _without_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def _kill_after_first_epoch(epoch):
    """An ``on_epoch_end`` that interrupts the run after its first epoch, as a Ctrl-C would."""
    if epoch == 0:
        raise KeyboardInterrupt


def test_batches_are_whole_cross_sections_with_block_diagonal_graphs(prepared):
    a, g = prepared["arrays"], prepared["graphs"]
    ds = DateDataset(a, g, [100, 101], window=20)
    batch = collate_dates([ds[0], ds[1]])
    n0, n1 = len(batch.codes[0]), len(batch.codes[1])
    assert n0 == int(a.present[100].sum()) and batch.x.shape == (n0 + n1, 20, a.features.shape[2])
    first, second = batch.neighbors[:n0], batch.neighbors[n0:]
    assert first.max() < n0 and (second[second >= 0] >= n0).all()
    assert batch.market.shape == (2, 20, a.market.shape[1])
    assert batch.date_of_node.tolist() == [0] * n0 + [1] * n1


def test_two_safe_runs_with_one_seed_are_identical(prepared, tmp_path):
    a = _train(prepared, CheckpointStore(tmp_path / "a"))
    b = _train(prepared, CheckpointStore(tmp_path / "b"))
    assert len(a) == 2
    np.testing.assert_equal(_without_seconds(a), _without_seconds(b))  # NaN-aware
    wa, wb = CheckpointStore(tmp_path / "a").load(0, "last")["model"], CheckpointStore(tmp_path / "b").load(0, "last")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_safe_mode_trains_on_its_thread_count_and_repeats_the_bits_at_it(prepared, tmp_path, caplog):
    """``training.threads``: safe mode on two threads (the count in force while it trains, the
    process's restored after); two runs at that count give the same weights."""
    seen, before = [], torch.get_num_threads()
    with caplog.at_level("INFO"):
        a = _train(prepared, CheckpointStore(tmp_path / "a"), epochs=1, threads=2, on_epoch_end=lambda e: seen.append(torch.get_num_threads()))
    b = _train(prepared, CheckpointStore(tmp_path / "b"), epochs=1, threads=2)
    assert seen == [2] and torch.get_num_threads() == before and "safe mode, 2 threads" in caplog.text
    np.testing.assert_equal(_without_seconds(a), _without_seconds(b))
    wa, wb = CheckpointStore(tmp_path / "a").load(0, "last")["model"], CheckpointStore(tmp_path / "b").load(0, "last")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("threads", [-1, 1.5, True])
def test_a_thread_count_that_is_not_a_whole_number_is_a_clear_error(threads):
    with pytest.raises(ValueError, match="training threads is safe mode's torch thread count"):
        small_config(threads=threads)


@pytest.mark.parametrize(("setting", "said"), [({"lr": -1e-3}, r"training lr is the learning rate, >= 0 \(0: the phase keeps its start\), got -0.001"),
                                               ({"weight_decay": -1}, r"weight_decay is AdamW's weight decay, >= 0, got -1"),
                                               ({"ema_decay": 1.5}, r"ema_decay is the weight average's decay, in \[0, 1\) \(null: off\), got 1.5"),
                                               ({"window": 0}, r"window is days of history a forecast reads, a whole number >= 1, got 0"),
                                               ({"seed": -1}, r"seed is .* a whole number >= 0, got -1"),
                                               ({"max_train_dates": 0}, r"max_train_dates is .* >= 1 \(null: all\), got 0"),
                                               ({"epochs": {"0": 2, "1": 0, "2": 1, "3": 1}}, r"epochs are whole numbers >= 1"),
                                               ({"patience": -1}, r"patience are whole numbers >= 0, one for every phase"),
                                               ({"early_stopping_weights": {"1d": 0.0}}, r"early_stopping_weights are weights >= 0 \(not all 0\)"),
                                               ({"device": "tpu"}, r"device is 'auto' or a torch device .*, got 'tpu'")])  # fmt: skip
def test_a_training_value_that_would_fail_late_or_silently_is_a_clear_error(setting, said):
    """A negative learning rate trained uphill without a word; the others failed once a phase began."""
    with pytest.raises(ValueError, match=said):
        small_config(**setting)


def test_the_lead_weighted_sum_can_be_turned_off_as_the_parameters_say(prepared, tmp_path):
    """``lead_weights: null`` (off) with the default ``lead_bands: [10]`` failed to build the
    model: with no lead-weighted sum there are no bands to split it in."""
    model = {**small_config().model, "neighbour_skip": (1,), "lead_weights": None, "lead_bands": (10,), "lead_features": ["ret_1d"]}
    history = _train(prepared, CheckpointStore(tmp_path), epochs=1, model=model)
    saved = CheckpointStore(tmp_path).load(0, "last")["config"]["model"]
    assert len(history) == 1 and saved["lead_attribute"] is None and tuple(saved["lead_bands"]) == ()


@pytest.mark.parametrize("name", ["horizon_weights", "early_stopping_weights"])
def test_a_weight_for_a_horizon_the_model_does_not_have_is_a_clear_error(name):
    small_config(**{name: {"1d": 1.0, "20d": 0.5}})  # the model's horizons are fine
    with pytest.raises(ValueError, match=rf"training {name} are weights by horizon, \['1d', '5d', '10d', '20d'\]; \['15d'\] is none of them"):
        small_config(**{name: {"15d": 1.0}})


def test_killed_run_resumes_to_the_same_weights(prepared, tmp_path):
    whole = CheckpointStore(tmp_path / "whole")
    _train(prepared, whole, epochs=3)

    broken = CheckpointStore(tmp_path / "broken")
    with pytest.raises(KeyboardInterrupt):
        _train(prepared, broken, epochs=3, on_epoch_end=_kill_after_first_epoch)
    assert broken.load(0, "last")["epoch"] == 0 and not broken.load(0, "last")["finished"]
    history = _train(prepared, broken, epochs=3)
    assert [row["epoch"] for row in history] == [0, 1, 2]
    for key in ("model", "train_weights"):  # the average and the weights being trained
        a, b = whole.load(0, "last")[key], broken.load(0, "last")[key]
        assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_equal(_without_seconds(whole.load(0, "last")["history"]), _without_seconds(history))


def test_an_interrupted_phase_continued_after_the_code_changed_starts_over(prepared, tmp_path, caplog, monkeypatch):
    """The weights and optimizer state of an interrupted phase are another code's: the phase
    trains again from its start, and says why."""
    import atft_kedro.training.loop as loop

    store = CheckpointStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _train(prepared, store, epochs=2, on_epoch_end=_kill_after_first_epoch)
    assert store.load(0, "last")["code"] == loop.code_version()
    monkeypatch.setattr(loop, "code_version", lambda: "edited")
    with caplog.at_level("INFO"):
        history = _train(prepared, store, epochs=2)
    assert "phase 0: the interrupted run in" in caplog.text and "was trained by other code" in caplog.text and "now edited): it starts over" in caplog.text
    assert "resuming after epoch" not in caplog.text and [row["epoch"] for row in history] == [0, 1]
    assert store.load(0, "last")["code"] == "edited"


def test_an_interrupted_phase_starts_over_under_other_settings_or_after_its_start_was_trained_again(prepared, tmp_path, caplog):
    """Going on from an interrupted phase mixes two runs unless it is the same run: under another
    learning rate, or after the phase it started from was trained again (``phase=all`` retrains the
    earlier phases when a setting changed), the phase trains again from its start and says why."""
    store = CheckpointStore(tmp_path / "lr")
    with pytest.raises(KeyboardInterrupt):
        _train(prepared, store, epochs=3, on_epoch_end=_kill_after_first_epoch)
    with caplog.at_level("INFO"):
        assert [row["epoch"] for row in _train(prepared, store, epochs=3, lr=1e-3)] == [0, 1, 2]
    assert "phase 0: the interrupted run in" in caplog.text and "was trained with other settings" in caplog.text
    assert "resuming after epoch" not in caplog.text

    chain = CheckpointStore(tmp_path / "chain")
    _train(prepared, chain, epochs=1)
    with pytest.raises(KeyboardInterrupt):
        _train(prepared, chain, phase=1, epochs=3, on_epoch_end=_kill_after_first_epoch)
    _train(prepared, chain, epochs=1)  # phase 0 trained again: the interrupted phase 1 started from the old one
    caplog.clear()
    with caplog.at_level("INFO"):
        assert [row["epoch"] for row in _train(prepared, chain, phase=1, epochs=3)] == [0, 1, 2]
    assert "phase 1: the interrupted run in" in caplog.text and "was trained from a phase 0 that has been trained again since" in caplog.text
    assert "resuming after epoch" not in caplog.text


WHOLE_EPOCHS = {"0": 1, "1": 1, "2": 2, "3": 2}


def _fingerprinted(prepared) -> tuple:
    """The training node's first four inputs, the arrays with a data fingerprint (what lets a run
    continue an interrupted one)."""
    import dataclasses

    arrays = dataclasses.replace(prepared["arrays"], data_fingerprint={"id": "tiny"})
    return arrays, prepared["graphs"], prepared["splits"], prepared["manifest"]


@pytest.fixture(scope="module")
def whole_run(prepared, tmp_path_factory):
    """``phase=all`` with epochs ``WHOLE_EPOCHS``, never interrupted: the weights that runs
    continued after an interruption or a raised limit must end at. Read only."""
    import atft_kedro.pipelines.training.nodes as nodes

    whole = CheckpointStore(tmp_path_factory.mktemp("whole_run"))
    nodes.train_model(*_fingerprinted(prepared), whole, "all", small_config(epochs=WHOLE_EPOCHS))
    return whole


def test_an_interrupted_run_continues_after_the_phases_it_finished(prepared, whole_run, tmp_path, caplog, monkeypatch):
    """``phase=all`` killed in phase 2: run again, it keeps phases 0 and 1 (not trained again),
    resumes phase 2 and trains phase 3, to the weights of a run never interrupted. Other settings,
    ``resume: false``, or a run that finished train everything again."""
    import dataclasses

    import atft_kedro.pipelines.training.nodes as nodes
    from atft_kedro.training.loop import finished_before

    args = _fingerprinted(prepared)
    arrays, cfg = args[0], small_config(epochs=WHOLE_EPOCHS)
    broken = CheckpointStore(tmp_path / "broken")

    def killed_in_phase_2(phase, *a, **kw):
        def kill(epoch):
            if phase == 2:
                raise KeyboardInterrupt
        return train_phase(phase, *a, **kw, on_epoch_end=kill)

    with monkeypatch.context() as m:
        m.setattr(nodes, "train_phase", killed_in_phase_2)
        with pytest.raises(KeyboardInterrupt):
            nodes.train_model(*args, broken, "all", cfg)
    sequence = [(broken, p) for p in range(4)]
    assert finished_before(sequence, cfg, arrays) == 2
    assert finished_before(sequence, dataclasses.replace(cfg, lr=1e-3), arrays) == 0
    flipped = dataclasses.replace(cfg, keep_freed_memory=not cfg.keep_freed_memory)
    assert finished_before(sequence, flipped, arrays) == 2  # how memory is handed out changes no weight
    assert finished_before(sequence, dataclasses.replace(cfg, resume=False), arrays) == 0
    assert finished_before(sequence, cfg, dataclasses.replace(arrays, data_fingerprint={"id": "other"})) == 0
    before = [broken.load(p, "last")["saved_ns"] for p in (0, 1)]
    with caplog.at_level("INFO"):
        _, model = nodes.train_model(*args, broken, "all", cfg)
    assert "continuing an interrupted run of these data and settings: phase 0, phase 1 finished before, kept" in caplog.text
    assert "phase 2: resuming after epoch 0" in caplog.text and "phase 0 ran before" not in caplog.text
    assert ("training.threads=0 uses them all" in caplog.text) == ((os.cpu_count() or 1) > 1)  # where a second core waits
    assert caplog.text.count("the Sharpe loss term needs several dates per step") == 1  # said once a run, not a phase
    assert [broken.load(p, "last")["saved_ns"] for p in (0, 1)] == before  # not trained again
    expected = whole_run.load(3, "best")["model"]
    assert all(torch.equal(model["model"][k], expected[k]) for k in expected)
    assert finished_before(sequence, cfg, arrays) == 0  # a finished run: the next one trains it all


def test_the_finished_part_of_an_interrupted_run_spans_folds_and_ends_at_a_stale_phase(tmp_path, caplog):
    """``finished_before`` over walk-forward folds, from the checkpoints' records alone: fold 0
    and fold 1's phase 0 finished in order, fold 1's phase 1 interrupted -> five kept; a phase
    saved before the one it follows is stale, and the kept part ends before it."""
    from dataclasses import asdict
    from types import SimpleNamespace

    from atft_kedro.provenance import code_version
    from atft_kedro.training.config import TrainConfig
    from atft_kedro.training.loop import finished_before

    cfg, arrays, root = TrainConfig(), SimpleNamespace(data_fingerprint={"id": "d"}), CheckpointStore(tmp_path)
    sequence = [(root.fold(f), p) for f in (0, 1) for p in range(4)]

    def save(i, saved_ns, finished=True):
        store, phase = sequence[i]
        store.save(phase, "last", {"finished": finished, "saved_ns": saved_ns, "data_fingerprint": {"id": "d"}, "config": {"train": asdict(cfg)},
                                   "code": code, "epoch": cfg.epochs - 1, "bad_epochs": 0})  # fmt: skip

    code = code_version()
    for i in range(5):
        save(i, 10 * (i + 1))
    save(5, 60, finished=False)
    assert finished_before(sequence, cfg, arrays) == 5
    code = "other"  # fold 1's phase 0 trained by other code (edited since): it and all after it train again
    save(4, 50)
    with caplog.at_level("INFO"):
        assert finished_before(sequence, cfg, arrays) == 4
    assert f"finished before, by other code (other; now {code_version()}): it is trained again" in caplog.text
    code = code_version()
    save(1, 5)  # fold 0's phase 1 older than its phase 0: trained from an earlier phase 0
    assert finished_before(sequence, cfg, arrays) == 1
    for i in range(8):
        save(i, 10 * (i + 1))
    assert finished_before(sequence, cfg, arrays) == 0  # the whole run finished: a new one trains it all


def test_a_phase_that_stopped_at_its_epoch_limit_goes_on_when_the_limit_rises(prepared, tmp_path, caplog):
    """Phase 0 trained for 2 epochs, then run with a limit of 3: it goes on after its second epoch
    (not from the start) to the weights and history of a run of 3 epochs; a lower limit than it ran,
    or a phase trained from a phase 0 trained since, trains again from the start."""
    whole, short = CheckpointStore(tmp_path / "whole"), CheckpointStore(tmp_path / "short")
    _train(prepared, whole, epochs=3)
    _train(prepared, short, epochs=2)
    assert short.load(0, "last")["finished"]
    with caplog.at_level("INFO"):
        history = _train(prepared, short, epochs=3)
    assert "phase 0: it stopped at its epoch limit (2) before; going on after epoch 1" in caplog.text and "ran before" not in caplog.text
    assert [row["epoch"] for row in history] == [0, 1, 2]
    np.testing.assert_equal(_without_seconds(whole.load(0, "last")["history"]), _without_seconds(history))
    for which, key in (("last", "model"), ("last", "train_weights"), ("best", "model")):
        a, b = whole.load(0, which)[key], short.load(0, which)[key]
        assert all(torch.equal(a[k], b[k]) for k in a)
    caplog.clear()
    with caplog.at_level("INFO"):
        assert [row["epoch"] for row in _train(prepared, short, epochs=2)] == [0, 1]  # fewer than it ran: from the start
    assert "phase 0 ran before; training it again from the start" in caplog.text and "going on" not in caplog.text

    chain = CheckpointStore(tmp_path / "chain")
    _train(prepared, chain, epochs=1)
    _train(prepared, chain, phase=1, epochs=1)
    _train(prepared, chain, epochs=1, seed=1)  # phase 0 trained again: phase 1's checkpoints are of the old one
    caplog.clear()
    with caplog.at_level("INFO"):
        assert [row["epoch"] for row in _train(prepared, chain, phase=1, epochs={0: 1, 1: 2, 2: 1, 3: 1}, seed=1)] == [0, 1]
    assert "phase 1 ran before; training it again from the start" in caplog.text and "going on" not in caplog.text


def test_a_finished_run_given_more_epochs_for_its_last_phase_keeps_the_others_and_goes_on(prepared, whole_run, tmp_path, caplog):
    """``phase=all`` finished, then run with phase 3's limit raised: phases 0-2 are kept (not
    trained again), phase 3 goes on after its last epoch, and the model is a run's of that limit."""
    import atft_kedro.pipelines.training.nodes as nodes

    args = _fingerprinted(prepared)
    short, more = small_config(epochs={**WHOLE_EPOCHS, "3": 1}), small_config(epochs=WHOLE_EPOCHS)
    store = CheckpointStore(tmp_path / "store")
    nodes.train_model(*args, store, "all", short)
    before = [store.load(p, "last")["saved_ns"] for p in range(3)]
    with caplog.at_level("INFO"):
        history, model = nodes.train_model(*args, store, "all", more)
    assert "phase 0, phase 1, phase 2 finished before, kept" in caplog.text and "phase 3: it stopped at its epoch limit (1) before; going on after epoch 0" in caplog.text
    assert [store.load(p, "last")["saved_ns"] for p in range(3)] == before
    assert history.filter(history["phase"] == 3)["epoch"].to_list() == [0, 1]
    expected = whole_run.load(3, "best")["model"]
    assert all(torch.equal(model["model"][k], expected[k]) for k in expected)


def test_a_finished_phase_is_kept_when_only_settings_it_does_not_depend_on_change(tmp_path):
    """``finished_before`` from the checkpoints' records alone: phases 0-2 finished (0 and 2 at
    their epoch limits, 1 stopped early), phase 3 interrupted. A phase is kept where a run of the new
    settings would train it to the same weights: later phases' epochs or patience changed, or its own
    limit above the epoch it stopped early at; it goes on (the kept part ends before it) where its
    limit rose above the one it stopped at, and trains again where its limit fell below what it ran
    or anything it depends on changed."""
    import dataclasses
    from dataclasses import asdict
    from types import SimpleNamespace

    from atft_kedro.provenance import code_version
    from atft_kedro.training.config import TrainConfig
    from atft_kedro.training.loop import finished_before

    cfg = TrainConfig(epochs={"0": 4, "1": 2, "2": 3, "3": 2}, patience={"0": 4, "1": 0, "2": 0, "3": 0})
    store, arrays = CheckpointStore(tmp_path), SimpleNamespace(data_fingerprint={"id": "d"})
    for phase, epoch, bad, finished in ((0, 3, 0, True), (1, 0, 1, True), (2, 2, 0, True), (3, 0, 0, False)):
        store.save(phase, "last", {"finished": finished, "saved_ns": 10 * (phase + 1), "epoch": epoch, "bad_epochs": bad,
                                   "data_fingerprint": {"id": "d"}, "config": {"train": asdict(cfg)}, "code": code_version()})  # fmt: skip
    sequence = [(store, p) for p in range(4)]

    def kept(**changes) -> int:
        for name in ("epochs", "patience"):
            if name in changes:
                changes[name] = {**getattr(cfg, name), **changes[name]}
        return finished_before(sequence, dataclasses.replace(cfg, **changes), arrays)

    assert kept() == 3
    assert kept(epochs={"3": 6}) == 3 and kept(patience={"3": 2}) == 3  # phase 3's settings: nothing before it changes
    assert kept(epochs={"1": 6}) == 3  # phase 1 stopped early, at epoch 0: more room changes nothing
    assert kept(epochs={"2": 5}) == 2  # phase 2 stopped at its limit: it goes on, and phase 3 trains after it
    assert kept(epochs={"2": 2}) == 2  # below the 3 epochs phase 2 ran: it trains again
    assert kept(epochs={"0": 8}) == 0 and kept(patience={"1": 1}) == 1 and kept(lr=3e-4) == 0
    # one number for every phase reads as that number per phase: 4 keeps phases 0 and 1, phase 2 goes on
    assert finished_before(sequence, dataclasses.replace(cfg, epochs=4), arrays) == 2


def test_a_universe_smaller_than_the_stocks_a_date_needs_is_a_clear_error(prepared, tmp_path):
    most = int(prepared["arrays"].present[_idx(prepared)[1]].sum(1).max())
    with pytest.raises(TrainingError, match=rf"validation dates have at most {most} stocks, fewer than training.min_stocks \({most + 1}\)"
                                            rf".*--params training.min_stocks={most},evaluation.min_stocks={most}"):  # fmt: skip
        _train(prepared, CheckpointStore(tmp_path), min_stocks=most + 1)
    assert not CheckpointStore(tmp_path).exists(0, "best")  # said before anything was trained


def test_a_window_longer_than_the_data_is_a_clear_error(prepared, tmp_path):
    days = prepared["arrays"].features.shape[0]
    with pytest.raises(TrainingError, match=rf"^training.window is {days + 1} days, longer than the data's {days} trading days"):
        _train(prepared, CheckpointStore(tmp_path), window=days + 1)
    assert not CheckpointStore(tmp_path).exists(0, "best")  # said before anything was trained


def test_phase_two_without_phase_one_is_a_clear_error(prepared, tmp_path):
    with pytest.raises(TrainingError, match=r"run phase=1 first \(kedro run --pipelines training --params phase=1\)"):
        _train(prepared, CheckpointStore(tmp_path), phase=2)


def test_a_checkpoint_that_no_longer_fits_the_model_is_a_clear_error(prepared, tmp_path):
    store = CheckpointStore(tmp_path)
    _train(prepared, store, phase=0, epochs=1)
    wider = {"d_model": 32, "temporal_heads": 2, "gat_heads": 2, "gat_layers": 1, "dropout": 0.1}
    with pytest.raises(TrainingError, match=r"does not fit this model .*--params phase=0\) or phase=all"):
        _train(prepared, store, phase=1, epochs=1, model=wider)


@pytest.mark.parametrize("gat_start", ["fusion", "previous"])
def test_phase_chain_starts_from_the_previous_best(prepared, tmp_path, caplog, gat_start):
    store = CheckpointStore(tmp_path)
    model = small_config().model | {"gat_start": gat_start}
    _train(prepared, store, phase=0, epochs=1, model=model)
    with caplog.at_level("INFO"):
        history = _train(prepared, store, phase=1, epochs=1, model=model)
    assert "starting from phase 0's best checkpoint" in caplog.text
    assert not math.isnan(history[0]["val_rank_ic_20d"])  # phase 1 validates every horizon
    assert math.isnan(history[0]["gat_share"])  # no GAT yet
    history = _train(prepared, store, phase=2, epochs=1, model=model)
    assert history[0]["gat_grad_norm"] > 1e-6
    assert 0.0 < history[0]["fusion_gate"] < 1.0
    if gat_start == "previous":  # the share starts at 0 and phase 2's steps move it toward the fusion
        assert history[0]["gat_share"] != 0.0 and math.isfinite(history[0]["gat_share"])
    else:
        assert math.isnan(history[0]["gat_share"])


def test_checkpoints_say_where_validation_started_the_graph_path_and_keep_it_through_resume_and_phase_3(prepared, tmp_path):
    """Phase 2's checkpoints hold the neighbour skip's start per horizon (what ``kept_starts``
    chose), an interrupted phase 2 resumes with it, and phase 3's checkpoints carry it on."""
    ridge = dict(linear_start="ridge", epochs=2, model={**small_config().model, "linear_skip": (1, 5), "neighbour_skip": (1, 5),
                                                       "lead_weights": "neighbour_leads_long"})  # fmt: skip
    store = CheckpointStore(tmp_path)
    for phase in (0, 1):
        _train(prepared, store, phase=phase, **ridge)
    assert store.load(1, "best")["starts"] == {}

    with pytest.raises(KeyboardInterrupt):
        _train(prepared, store, phase=2, on_epoch_end=_kill_after_first_epoch, **ridge)
    kept = store.load(2, "last")["starts"]["phase 2, neighbour skip"]
    assert set(kept) == {"1d", "5d"} and all(name.startswith(("none", "the fit")) for name in kept.values())
    _train(prepared, store, phase=2, **ridge)  # resumes after epoch 0
    assert store.load(2, "last")["epoch"] == 1 and store.load(2, "last")["starts"] == store.load(2, "best")["starts"] == {"phase 2, neighbour skip": kept}
    _train(prepared, store, phase=3, epochs=1, linear_start="ridge", model=ridge["model"])
    assert store.load(3, "best")["starts"] == {"phase 2, neighbour skip": kept}


def test_training_a_finished_phase_again_says_so_and_names_the_stale_phases(prepared, tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    for phase in (0, 1, 2):
        _train(prepared, store, phase=phase, epochs=1)
    with caplog.at_level("WARNING"):
        _train(prepared, store, phase=1, epochs=1)
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "phase 1 ran before; training it again from the start replaces its checkpoints" in warning
    assert "Phase(s) 2 were trained from the old phase 1 and are now stale" in warning
    assert "kedro run --pipelines training --params phase=2)" in warning
    caplog.clear()
    with caplog.at_level("WARNING"):  # phase 2 is about to be retrained: nothing is left stale
        train_idx, val_idx = _idx(prepared)
        train_phase(1, prepared["arrays"], prepared["graphs"], train_idx, val_idx, small_config(epochs=1), store,
                    prepared["manifest"], progress=False, followed_by=(2, 3))  # fmt: skip
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "ran before" in warning and "stale" not in warning


def test_a_finished_phase_trained_again_says_why(prepared, tmp_path, caplog):
    """A run that trains a finished phase again says why in its warning: the settings the phase
    depends on that differ, by name (nested ones dotted) and value, or more epochs than its limit,
    or that it finished with these very settings (a finished run runs again; only an interrupted
    one goes on), or that resuming is off. An interrupted phase under other settings names them too."""
    model = {"d_model": 16, "temporal_heads": 2, "gat_heads": 2, "gat_layers": 1, "dropout": 0.1}
    store = CheckpointStore(tmp_path / "finished")
    _train(prepared, store, epochs=1)

    def warning_of(**kw) -> str:
        caplog.clear()
        with caplog.at_level("WARNING"):
            _train(prepared, store, **kw)
        return next(r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "ran before" in r.getMessage())

    said = warning_of(epochs=1, seed=1, model={**model, "dropout": 0.2})
    assert "phase 0 ran before; training it again from the start replaces its checkpoints in" in said
    assert "(it was trained with other settings: training.model.dropout 0.1 then, 0.2 now; training.seed 0 then, 1 now)" in said
    assert "(it finished with these data, code and settings: only an interrupted run is continued" in warning_of(epochs=1, seed=1, model={**model, "dropout": 0.2})
    _train(prepared, store, epochs=2, patience=5)
    assert "(it ran 2 epochs, more than this run's limit of 1)" in warning_of(epochs=1, patience=5)
    assert "(training.resume is off)" in warning_of(epochs=1, patience=5, resume=False)

    interrupted = CheckpointStore(tmp_path / "interrupted")
    with pytest.raises(KeyboardInterrupt):
        _train(prepared, interrupted, epochs=3, on_epoch_end=_kill_after_first_epoch)
    caplog.clear()
    with caplog.at_level("INFO"):
        _train(prepared, interrupted, epochs=3, lr=1e-3)
    assert "was trained with other settings: training.lr 0.003 then, 0.001 now: it starts over" in caplog.text


def test_checkpoints_of_other_data_are_not_built_on(prepared, tmp_path, caplog):
    from dataclasses import replace

    from atft_kedro.provenance import StaleArtifactError

    fp = {"id": "aaaaaaaaaaaa", "source": "synthetic", "stocks": 60, "first_date": "x", "last_date": "y", "made_at": "z"}
    store = CheckpointStore(tmp_path)
    train_idx, val_idx = _idx(prepared)
    run = lambda phase, arrays, **kw: train_phase(phase, arrays, prepared["graphs"], train_idx, val_idx, small_config(epochs=2),
                                                 store, prepared["manifest"], progress=False, **kw)  # fmt: skip
    a = replace(prepared["arrays"], data_fingerprint=fp)
    b = replace(prepared["arrays"], data_fingerprint={**fp, "id": "bbbbbbbbbbbb", "source": "files"})
    run(0, a)
    assert store.load(0, "best")["data_fingerprint"] == fp and store.load(0, "last")["saved_at"]
    with pytest.raises(StaleArtifactError, match=r"checkpoint was built from other data .* checkpoint: synthetic data aaaaaaaaaaaa"):
        run(1, b)

    def kill(epoch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(1, a, on_epoch_end=kill)  # an interrupted phase 1 of data a ...
    with caplog.at_level("WARNING"):
        run(0, b)  # (phase 0 retrained on data b)
        history = run(1, b)  # ... is not resumed on data b
    assert "was of other data (synthetic data aaaaaaaaaaaa" in caplog.text and "it starts over" in caplog.text
    assert [row["epoch"] for row in history] == [0, 1]


@pytest.mark.parametrize("mode", ["safe", "optimized"])
def test_non_finite_inputs_are_reported_and_skipped_or_stop_the_run(prepared, tmp_path, caplog, mode):
    a = prepared["arrays"]
    features = np.array(a.features)
    train_idx, _ = _idx(prepared)
    bad_day = int(train_idx[3])
    features[bad_day, np.flatnonzero(a.present[bad_day])[0], 0] = np.nan
    poisoned = {**prepared, "arrays": type(a)(**{**a.__dict__, "features": features})}
    with caplog.at_level("WARNING"):
        history = _train(poisoned, CheckpointStore(tmp_path / "a"), epochs=1, max_train_dates=None, max_bad_batch_fraction=0.5, mode=mode,
                         dates_per_batch=2)  # fmt: skip
    assert "non-finite input" in caplog.text
    assert history[0]["skipped"] >= 1  # the poisoned date (and the 19 after it, whose windows hold it)
    with pytest.raises(TrainingError, match="batches had non-finite inputs or loss"):
        _train(poisoned, CheckpointStore(tmp_path / "b"), epochs=1, max_train_dates=None, max_bad_batch_fraction=0.0, mode=mode, dates_per_batch=2)


def test_a_run_without_any_valid_validation_date_still_keeps_a_best_checkpoint(prepared, tmp_path):
    """No validation target known (every validation RankIC NaN, on every epoch): never a crash, and
    the first epoch is kept as best so that the next phase can start. (Too few stocks on every
    validation date is said before training: the test above.)"""
    import dataclasses

    train_idx, val_idx = _idx(prepared)
    targets = np.array(prepared["arrays"].targets)
    targets[val_idx] = np.nan
    arrays = dataclasses.replace(prepared["arrays"], targets=targets)
    store = CheckpointStore(tmp_path)
    cfg = small_config(epochs=2)
    history = train_phase(0, arrays, prepared["graphs"], train_idx, val_idx, cfg, store, prepared["manifest"], progress=False)
    assert all(math.isnan(row["val_metric"]) for row in history)
    assert store.load(0, "best")["epoch"] == 0


@pytest.mark.parametrize("decay", [0.9, 0.998])
def test_weight_average_weighs_each_step_decay_times_the_next(decay):
    """After n updates the average is sum_k decay^(n-k) w_k / sum_k decay^(n-k): the configured
    decay from the first step on (a warm-up that caps it would fail at either decay). An integer
    buffer (an index, as the neighbour skip's ``lead_columns``) is left as it is."""
    from atft_kedro.training.loop import weight_average

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    net.register_buffer("columns", torch.tensor([2, 0]), persistent=False)
    avg = weight_average(net, decay)
    seen = []
    for n in range(1, 600):
        with torch.no_grad():
            net.weight.add_(torch.randn_like(net.weight))
        seen.append(net.weight.detach().clone().double())
        avg.update(net)
        if n in (1, 2, 10, 599):
            w = decay ** torch.arange(n - 1, -1, -1, dtype=torch.float64)  # oldest first
            expected = (w[:, None, None] * torch.stack(seen)).sum(0) / w.sum()
            torch.testing.assert_close(avg.module.weight.double(), expected, atol=2e-5, rtol=1e-5)
    assert torch.equal(avg.module.columns, torch.tensor([2, 0]))
    assert weight_average(net, None) is None


def test_checkpoints_hold_the_average_and_the_trained_weights(prepared, tmp_path):
    store = CheckpointStore(tmp_path)
    _train(prepared, store)
    state = store.load(0, "last")
    assert set(state["model"]) == set(state["train_weights"])
    assert any(not torch.equal(state["model"][k], state["train_weights"][k]) for k in state["model"])
    off = CheckpointStore(tmp_path / "off")
    _train(prepared, off, ema_decay=None)
    assert "train_weights" not in off.load(0, "last")


def test_an_epoch_that_improves_is_saved_once_as_best_and_copied_to_last(prepared, tmp_path):
    store = CheckpointStore(tmp_path)
    history = _train(prepared, store, epochs=1, keep_start=False)  # no start to beat: the one epoch is the best
    assert store.load(0, "best")["epoch"] == history[-1]["epoch"] == 0
    assert store.path(0, "best").read_bytes() == store.path(0, "last").read_bytes()
    assert not list(tmp_path.rglob("*.tmp"))


def test_optimized_mode_predicts_several_dates_a_batch_as_one_date_at_a_time(prepared):
    """Validation and evaluation batch dates as training does (optimized mode): the same rows, in
    the same order, and the same forecasts as one date a batch (safe mode)."""
    arrays, graphs = prepared["arrays"], prepared["graphs"]
    cfg = small_config(mode="optimized", dates_per_batch=4)
    ds = DateDataset(arrays, graphs, np.arange(100, 111), cfg.window)  # 11 dates: 4 + 4 + 3
    model = build_model(arrays, graphs, cfg, 2, torch.device("cpu"))
    batched, single = predict(model, ds, cfg, torch.device("cpu")), predict(model, ds, small_config(), torch.device("cpu"))
    assert batched.height == single.height == int(arrays.present[100:111].sum())
    assert batched.select("Date", "Code").equals(single.select("Date", "Code"))
    for column in single.columns[2:]:
        np.testing.assert_allclose(batched[column].to_numpy(), single[column].to_numpy(), rtol=1e-5, atol=1e-6, err_msg=column)



def test_a_forecast_advances_torchs_generator_by_one_draw_and_a_forked_one_by_none(prepared):
    """What predict's docstring says: through a DataLoader a forecast takes one draw (its base
    seed) from torch's generator, so training after it draws differently; inside fork_rng, nothing."""
    arrays, graphs = prepared["arrays"], prepared["graphs"]
    cfg = small_config()
    ds = DateDataset(arrays, graphs, np.arange(100, 103), cfg.window)
    model = build_model(arrays, graphs, cfg, 0, torch.device("cpu"))
    torch.manual_seed(11)
    untouched = torch.rand(4)
    torch.manual_seed(11)
    torch.empty((), dtype=torch.int64).random_()  # one draw
    after_one_draw = torch.rand(4)
    torch.manual_seed(11)
    predict(model, ds, cfg, torch.device("cpu"))
    assert torch.equal(torch.rand(4), after_one_draw) and not torch.equal(after_one_draw, untouched)
    torch.manual_seed(11)
    with torch.random.fork_rng(devices=[]):
        predict(model, ds, cfg, torch.device("cpu"))
    assert torch.equal(torch.rand(4), untouched)

def test_resident_batches_equal_the_dataloader_batches(prepared):
    """Optimized mode on CUDA gathers batches from arrays kept on the GPU. Built on the CPU here, they
    must equal the DataLoader's batches field for field, in the same order, the zero padding of
    dates with less history than the window included."""
    arrays, graphs = prepared["arrays"], prepared["graphs"]
    cfg = small_config(mode="optimized", dates_per_batch=3, window=20)
    idx = np.array([0, 5, 19, 20, 40, 41, 100])  # dates 0 and 5 have less history than the window
    ds = DateDataset(arrays, graphs, idx, cfg.window)
    resident = ResidentDates(arrays, graphs, cfg.window, torch.device("cpu"))
    order = date_order(len(ds), 7)
    got, want = list(train_batches(ds, cfg, 7, resident)), list(make_loader(ds, cfg, step_shares(order, 3, Ranks())))
    assert len(got) == len(want) == 3
    assert [d for b in got for d in b.dates] != list(arrays.dates[idx])  # shuffled, and alike below
    for g, w in zip(got, want):
        for field in ("x", "market", "date_of_node", "edge_attr"):
            assert torch.equal(getattr(g, field), getattr(w, field)), field
        assert g.neighbors.dtype == torch.int32 and torch.equal(g.neighbors.long(), w.neighbors)  # int32 on the device
        for h in w.targets:
            torch.testing.assert_close(g.targets[h], w.targets[h], rtol=0, atol=0, equal_nan=True)
        assert g.dates == w.dates and all(np.array_equal(a, b) for a, b in zip(g.codes, w.codes))
    model = build_model(arrays, graphs, cfg, 2, torch.device("cpu"))  # validation reads the resident arrays too
    with_resident = predict(model, ds, cfg, torch.device("cpu"), resident)
    assert with_resident.height > 0 and with_resident.equals(predict(model, ds, cfg, torch.device("cpu")))
    first = [(b, d) for b in got for d, date in enumerate(b.dates) if date == arrays.dates[0]]
    assert len(first) == 1  # the first date: one day of history, the window's other 19 days are zeros
    b, d = first[0]
    nodes = b.date_of_node == d
    assert b.x[nodes, :-1].abs().sum() == 0 and b.x[nodes, -1].abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="resident arrays are for optimized mode on CUDA")
def test_optimized_mode_on_cuda_trains_from_resident_arrays(prepared, tmp_path, caplog):
    caplog.set_level("INFO", logger="atft_kedro.training.loop")
    history = _train(prepared, CheckpointStore(tmp_path), mode="optimized", dates_per_batch=4, epochs=1)
    assert any("training arrays on cuda" in r.getMessage() for r in caplog.records)
    assert history[0]["steps"] == 3 and history[0]["skipped"] == 0 and math.isfinite(history[0]["train_loss"])


def test_a_safe_run_leaves_no_settings_behind(prepared, tmp_path):
    """Safe mode's one thread and deterministic algorithms end with its run (the training benchmark
    runs safe then optimized in one process; optimized must not inherit them)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    _train(prepared, CheckpointStore(tmp_path), mode="safe", epochs=1)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
def test_the_finite_check_sees_nan_and_both_infinities(bad):
    from atft_kedro.training.batches import finite

    t = torch.randn(50, 20, 7)
    if bad is not None:
        t[31, 4, 6] = bad
    assert bool(finite(t)) == (bad is None)
    assert bool(finite(torch.empty(0, 20, 7)))


def test_neutral_targets_are_what_training_sees_and_predictions_keep_the_realised_returns(prepared, tmp_path):
    """``targets: neutral`` puts the neutralised returns in the training arrays (so the losses and
    early stopping use them), while the test predictions carry the raw realised returns."""
    import polars as pl

    from atft_kedro.features.targets import neutralise_targets
    from atft_kedro.pipelines.evaluation.nodes import predict_test
    from atft_kedro.pipelines.training.nodes import build_training_arrays
    from atft_kedro.training.data import build_arrays

    model_input, context, manifest = prepared["model_input"], prepared["market_context"], prepared["manifest"]
    cfg = small_config(epochs=1, targets="neutral")
    params = {**cfg.__dict__}
    neutral = build_training_arrays(model_input, context, manifest, params)
    names = [m["name"] for m in manifest if not m["date_constant"]]
    expected = build_arrays(neutralise_targets(model_input), context, names)
    np.testing.assert_array_equal(neutral.targets, expected.targets)
    raw = build_training_arrays(model_input, context, manifest, {**params, "targets": "raw"})
    with_beta = model_input.filter(pl.col("target_1d").is_finite() & pl.col("beta_60d").is_finite()).height
    assert np.isfinite(neutral.targets[..., 0]).sum() == with_beta  # a row without a beta yet sits out
    both = np.isfinite(neutral.targets) & np.isfinite(raw.targets)
    assert not np.allclose(neutral.targets[both], raw.targets[both])

    store = CheckpointStore(tmp_path)
    train_idx, val_idx = _idx(prepared)
    train_phase(0, neutral, prepared["graphs"], train_idx, val_idx, cfg, store, manifest, progress=False)
    preds = predict_test(store.load(0, "best"), neutral, prepared["graphs"], prepared["splits"], model_input)
    realised = preds.join(model_input.select("Date", "Code", pl.col("target_1d").alias("raw_1d")), on=["Date", "Code"])
    assert preds.height > 0 and realised["target_1d"].equals(realised["raw_1d"])
    long_only = build_training_arrays(model_input, context, manifest, {**params, "targets": "neutral_long"})  # 5-20 days neutral, 1 day raw
    np.testing.assert_array_equal(long_only.targets[..., 0], raw.targets[..., 0])
    np.testing.assert_array_equal(long_only.targets[..., 1:], expected.targets[..., 1:])
    assert small_config(targets="neutral_long").neutral_horizons == (5, 10, 20) and small_config().neutral_horizons == ()
    with pytest.raises(ValueError, match="training targets must be 'raw', 'neutral' or 'neutral_long'"):
        small_config(targets="residual")


@pytest.mark.parametrize("phase", [0, 1])
def test_a_checkpoint_rebuilds_the_model_it_was_trained_as(prepared, tmp_path, phase):
    """Evaluation rebuilds each phase's model with that phase's switches: a phase-0 model runs
    without FAN, GAT and the longer horizons, and the test predictions are the trained model's."""
    from atft_kedro.pipelines.evaluation.nodes import predict_test
    from atft_kedro.training.checkpoints import model_from_checkpoint

    store = CheckpointStore(tmp_path)
    for p in range(phase + 1):
        _train(prepared, store, phase=p, epochs=1)
    state = store.load(phase, "best")
    net = model_from_checkpoint(state)
    expected = {0: (False, False, (1,)), 1: (True, False, (1, 5, 10, 20))}[phase]
    assert (net.use_fan, net.use_gat, net.horizons) == expected
    cfg = small_config()
    trained = build_model(prepared["arrays"], prepared["graphs"], cfg, phase, torch.device("cpu"))
    trained.load_state_dict(state["model"])
    test_idx = split_indices(prepared["arrays"], prepared["splits"], "test")
    want = predict(trained, DateDataset(prepared["arrays"], prepared["graphs"], test_idx, cfg.window), cfg, torch.device("cpu"))
    got = predict_test(state, prepared["arrays"], prepared["graphs"], prepared["splits"], prepared["model_input"])
    preds = [c for c in want.columns if c.startswith("pred_")]
    assert len(preds) == len(expected[2]) and [c for c in got.columns if c.startswith("pred_")] == preds
    np.testing.assert_array_equal(got.select(preds).to_numpy(), want.select(preds).to_numpy())
    # the forecast parameters lean the long horizons on the 1-day forecast; 1 day itself is as the model gives it
    leaned = predict_test(state, prepared["arrays"], prepared["graphs"], prepared["splits"], prepared["model_input"], forecast={"one_day_share": 0.5})
    assert leaned.equals(lean_on_one_day(got, 0.5)) and leaned["pred_1d"].equals(got["pred_1d"])
    assert (phase == 0) == leaned.equals(got)  # phase 0 has no long horizon to lean


def test_a_checkpoint_of_an_earlier_format_is_a_clear_error(prepared, tmp_path):
    from atft_kedro.training.checkpoints import TrainingError, model_from_checkpoint

    store = CheckpointStore(tmp_path)
    _train(prepared, store, phase=0, epochs=1)
    old = {k: v for k, v in store.load(0, "best").items() if k != "format"}
    with pytest.raises(TrainingError, match=r"earlier version .* \(kedro run --pipelines training --params phase=0\)"):
        model_from_checkpoint(old)


@pytest.mark.parametrize("damage", ["truncated", "text"])
def test_a_damaged_checkpoint_is_a_clear_error_that_names_the_file_and_what_writes_it(tmp_path, damage):
    """A checkpoint cut short (a disk that filled, a copy stopped) or a file of another kind was
    torch's 'OSError: [Errno 22] Invalid argument' or a zip reader's error, naming neither."""
    from kedro.io.core import DatasetError

    from atft_kedro.datasets.torch_datasets import TorchCheckpointDataset

    store = CheckpointStore(tmp_path / "checkpoints")
    path = store.save(1, "best", {"model": {"w": torch.arange(10_000.0)}, "epoch": 3})
    assert store.load(1, "best")["epoch"] == 3
    model = TorchCheckpointDataset(filepath=str(tmp_path / "model.pt"))
    model.save({"model": {"w": torch.zeros(3)}})
    for file in (path, tmp_path / "model.pt"):
        whole = file.read_bytes()
        file.write_bytes(whole[: len(whole) // 2] if damage == "truncated" else b"not a checkpoint\n")
    with pytest.raises(TrainingError, match=rf"^{re.escape(str(path))} cannot be read as a checkpoint \(damaged, .*\); train phase 1 again: kedro run --pipelines training --params phase=1"):
        store.load(1, "best")
    with pytest.raises(DatasetError, match=r"model.pt cannot be read as a checkpoint .*; training writes it at its end: kedro run --pipelines training$"):
        model.load()  # through the catalog, Kedro's DatasetError carries the message
    with pytest.raises(FileNotFoundError):  # a missing one is not called damaged
        store.load(2, "best")


def test_the_sharpe_term_has_no_effect_with_one_date_per_step(prepared, tmp_path):
    """The Sharpe loss is across the dates of a step: safe mode's one-date steps train the same
    weights whatever its weight (as the training config says), several dates per step do not."""
    runs = {}
    for mode, sharpe in [("safe", 0.0), ("safe", 5.0), ("optimized", 0.0), ("optimized", 5.0)]:
        store = CheckpointStore(tmp_path / f"{mode}{sharpe}")
        weights = {"pinball": 1.0, "rank_ic": 0.5, "ic": 0.3, "sharpe": sharpe}
        _train(prepared, store, epochs=1, mode=mode, dates_per_batch=3, loss_weights=weights)
        runs[mode, sharpe] = store.load(0, "last")["train_weights"]
    same = lambda a, b: all(torch.equal(runs[a][k], runs[b][k]) for k in runs[a])  # noqa: E731
    assert same(("safe", 0.0), ("safe", 5.0))
    assert not same(("optimized", 0.0), ("optimized", 5.0))


def test_epochs_per_phase(prepared, tmp_path):
    from atft_kedro.training.config import epochs_of

    cfg = small_config(epochs={0: 2, 1: 1, 2: 1, 3: 1})
    assert [epochs_of(cfg, p) for p in range(4)] == [2, 1, 1, 1] and epochs_of(small_config(epochs=3), 2) == 3
    assert len(_train(prepared, CheckpointStore(tmp_path), epochs={0: 2, 1: 1, 2: 1, 3: 1})) == 2
    with pytest.raises(ValueError, match=r"training epochs must be a number or \{phase: epochs\} for phases \[0, 1, 2, 3\]"):
        small_config(epochs={0: 2})


def test_one_phase_of_a_per_phase_setting_is_overridden_from_the_command_line():
    """``kedro run --params training.epochs.0=8`` gives the phase as text ({"0": 8}); the project's
    own per-phase settings must use the same keys, or the config loader refuses to merge them
    (integer and string keys for one phase), and a JSON override (experiments/seeds.py) merges as well."""
    from kedro.config import OmegaConfigLoader

    from atft_kedro.pipelines.in_memory import ROOT, project_parameters
    from atft_kedro.training.config import TrainConfig, epochs_of, patience_of

    override = {"training": {"epochs": {"0": 8}, "patience": {"2": 1}}}  # what kedro's --params parser makes of it
    loaded = OmegaConfigLoader(str(ROOT / "conf"), base_env="base", default_run_env="base", runtime_params=override)["parameters"]
    for params in (loaded, project_parameters(override)):
        cfg = TrainConfig(**params["training"])
        assert [epochs_of(cfg, p) for p in range(4)] == [8, 2, 3, 2] and [patience_of(cfg, p) for p in range(4)] == [4, 0, 1, 0]


def test_patience_per_phase_stops_a_phase_after_that_many_epochs_below_its_best(prepared, tmp_path, monkeypatch):
    """Validation scripted to fall after the start: a phase with patience p runs p + 1 epochs (of 4),
    one that improves runs on; the setting is one number or {phase: patience} for every phase."""
    from atft_kedro.evaluation.metrics import DailyScores
    from atft_kedro.training import loop
    from atft_kedro.training.config import patience_of

    cfg = small_config(patience={0: 2, 1: 0, 2: 0, 3: 0})
    assert [patience_of(cfg, p) for p in range(4)] == [2, 0, 0, 0] and patience_of(small_config(patience=3), 1) == 3
    with pytest.raises(ValueError, match=r"training patience must be a number or \{phase: patience\} for phases \[0, 1, 2, 3\]"):
        small_config(patience={0: 2})

    def scripted(scores):
        it = iter(scores)
        monkeypatch.setattr(loop, "rank_ic_by_date", lambda *a, **k: {"1d": DailyScores([0], np.zeros(1), np.array([next(it)]), 0, 1, 0)})

    runs = {}
    for name, patience, scores in [("falls, 0", 0, [0.05, 0.04, 0.03, 0.02, 0.01]), ("falls, 2", 2, [0.05, 0.04, 0.03, 0.02, 0.01]),
                                   ("rises, 0", 0, [0.01, 0.02, 0.03, 0.04, 0.05])]:  # fmt: skip
        scripted(scores)
        history = _train(prepared, CheckpointStore(tmp_path / name), epochs=4, patience={0: patience, 1: 5, 2: 5, 3: 5})
        runs[name] = [row["val_rank_ic_1d"] for row in history]
    assert runs == {"falls, 0": [0.04], "falls, 2": [0.04, 0.03, 0.02], "rises, 0": [0.02, 0.03, 0.04, 0.05]}


def test_the_graph_paths_start_at_ridge_fits_of_the_training_split(prepared):
    """linear_start=ridge: the linear skip solves the ridge problem of the targets (less each date's
    mean, in the model's units) on the last day's features; the neighbour skip is set so that the
    model's forecast plus the skip is c times the ridge fit of the targets on the neighbours'
    inputs and the forecast together, for some c > 0 (the same ranking every date): the ridge
    objective's gradient is 0 there."""
    from atft_kedro.training.starts import start_at_ridge, start_neighbours_at_ridge, training_rows

    arrays, graphs = prepared["arrays"], prepared["graphs"]
    train_idx = _idx(prepared)[0][:40]
    cfg = small_config(model={**small_config().model, "linear_skip": (1, 5), "neighbour_skip": (1, 5), "lead_weights": "neighbour_leads_long"})
    torch.manual_seed(0)
    model = build_model(arrays, graphs, cfg, 2, torch.device("cpu"))
    model.target_scale.copy_(torch.tensor([0.02, 0.04, 0.06, 0.08]))
    start_at_ridge(model, arrays, train_idx, alpha=50.0)
    x, y = training_rows(arrays, train_idx, model.target_scale.numpy())
    with torch.no_grad():
        for i in range(len(model.linear.weight)):
            w, b = model.linear.weight[i].double().numpy(), float(model.linear.bias[i])
            ok = np.isfinite(y[:, i])
            residual = x[ok] @ w + b - y[ok, i]
            assert np.abs(x[ok].T @ residual + 50.0 * w).max() < 1e-3 * np.abs(x[ok].T @ y[ok, i]).max()
            assert abs(residual.sum()) < 1e-6 * len(residual)  # the unpenalised intercept
    forecast = predict(model, DateDataset(arrays, graphs, train_idx, cfg.window), cfg, torch.device("cpu"))  # the neighbour skip still 0
    f = np.stack([forecast[f"pred_{h}d"].to_numpy() / s for h, s in zip((1, 5, 10, 20), (0.02, 0.04, 0.06, 0.08))], 1)
    start_neighbours_at_ridge(model, arrays, graphs, train_idx, cfg.window, alpha=50.0)
    with torch.no_grad():
        inputs = np.vstack([model.neighbour.inputs(torch.as_tensor(arrays.features[t, m]), graphs.graph(arrays.dates[t]).neighbors,
                                                   graphs.graph(arrays.dates[t]).edge_attr).double().numpy()
                            for t, m in ((t, np.flatnonzero(arrays.present[t])) for t in train_idx)])  # fmt: skip
    assert inputs.shape[1] == 2 * arrays.features.shape[2]  # the mean and the lead-weighted sum
    for i, h in enumerate((1, 5)):  # horizons the linear skip forecasts: the forecast ranks the training targets (c > 0)
        col = (1, 5, 10, 20).index(h)
        ok = np.isfinite(y[:, col])
        w, b = model.neighbour.linear.weight[i].detach().double().numpy(), float(model.neighbour.linear.bias[i].detach())
        design, target = np.hstack([inputs[ok], f[ok, col : col + 1]]), y[ok, col]
        u = design @ np.append(w, 1.0) + b  # the model's output after the start, in its units
        c = (u @ target) / (u @ u + 50.0 * (w @ w + 1.0))  # the best multiple of it
        assert c > 0
        coef, intercept = c * np.append(w, 1.0), c * b
        residual = design @ coef + intercept - target
        assert np.abs(design.T @ residual + 50.0 * coef).max() < 1e-3 * np.abs(design.T @ target).max()
        assert abs(residual.sum()) < 1e-6 * len(residual)
    assert np.abs(model.neighbour.linear.weight.detach().numpy()).sum() > 0
    with pytest.raises(ValueError, match="which the graphs do not have"):
        build_model(arrays, graphs, small_config(model={**small_config().model, "lead_weights": "no_such_attribute"}), 2, torch.device("cpu"))
    named = build_model(arrays, graphs, small_config(model={**cfg.model, "lead_features": ["ret_1d", "resid_ret_1d"]}), 2, torch.device("cpu"))
    assert named.cfg.lead_columns == (arrays.feature_names.index("ret_1d"), arrays.feature_names.index("resid_ret_1d"))
    with pytest.raises(ValueError, match=r"lead_features names \['no_such_feature'\]"):
        build_model(arrays, graphs, small_config(model={**cfg.model, "lead_features": ["ret_1d", "no_such_feature"]}), 2, torch.device("cpu"))


def _model_and_validation(prepared, cfg, phase: int):
    """A new model of ``phase`` (seed 0, target scales 0.02-0.08), 30 training dates, and the
    validation split as a phase sees it (RankIC at the phase's horizons, 5 stocks a date at least)."""
    from atft_kedro.training.predict import rank_ic_by_date
    from atft_kedro.training.starts import Validation

    arrays, graphs = prepared["arrays"], prepared["graphs"]
    val_ds = DateDataset(arrays, graphs, _idx(prepared)[1], cfg.window)
    torch.manual_seed(0)
    model = build_model(arrays, graphs, cfg, phase, torch.device("cpu"))
    model.target_scale.copy_(torch.tensor([0.02, 0.04, 0.06, 0.08]))
    horizons = [f"{h}d" for h in model.horizons]  # the phase's, as training validates
    validation = Validation(val_ds, lambda m: predict(m, val_ds, cfg, torch.device("cpu")), lambda f: rank_ic_by_date(f, horizons, 5))
    return model, _idx(prepared)[0][:30], validation


def test_the_neighbour_skip_starts_where_validation_says(prepared):
    """With a validation split, each horizon's row of the skip's map starts at the best of: no skip
    (its map 0, the previous phase's function), the fit beside the forecast, the fit of what the
    forecast leaves, each of the two also on the lead-weighted sum alone; horizon by horizon (a
    horizon's output reads only its row). The candidates' scores, computed from one forecast and
    the skip's term, are the model's own: each candidate loaded and predicted in full scores the
    same."""
    from atft_kedro.training.starts import start_neighbours_at_ridge

    arrays, graphs = prepared["arrays"], prepared["graphs"]
    cfg = small_config(model={**small_config().model, "linear_skip": (1, 5), "neighbour_skip": (1, 5), "lead_weights": "neighbour_leads_long"})
    model, train_idx, validation = _model_and_validation(prepared, cfg, 2)
    forecast, rank_ics = validation.forecast, validation.rank_ics
    start = start_neighbours_at_ridge(model, arrays, graphs, train_idx, cfg.window, alpha=50.0, validation=validation)
    F = arrays.features.shape[2]
    none = "none (the previous phase's function)"
    assert set(start.starts) == {none, "the fit beside the forecast", "the fit of what the forecast leaves",
                                 "the fit beside the forecast, lead-weighted sum alone", "the fit of what the forecast leaves, lead-weighted sum alone"}  # fmt: skip
    assert torch.equal(start.starts[none]["weight"], torch.zeros_like(start.starts[none]["weight"]))
    for name, weights in start.starts.items():
        if name != none:
            assert (weights["weight"].abs().sum(1) > 0).all()
        if name.endswith("sum alone"):  # the mean's columns at 0
            assert torch.equal(weights["weight"][:, :F], torch.zeros_like(weights["weight"][:, :F]))
    chosen = model.neighbour.linear.state_dict()
    for i, h in enumerate(("1d", "5d")):
        assert start.kept[h] == max(start.scores, key=lambda n: (start.scores[n][h], n != none))
        assert torch.equal(chosen["weight"][i], start.starts[start.kept[h]]["weight"][i])
        assert torch.equal(chosen["bias"][i], start.starts[start.kept[h]]["bias"][i])
    for name, weights in start.starts.items():  # each candidate in the model, predicted in full
        model.neighbour.linear.load_state_dict(weights)
        full = rank_ics(forecast(model))
        for h in ("1d", "5d", "10d", "20d"):
            assert start.scores[name][h] == pytest.approx(full[h], abs=1e-6), (name, h)
    assert len({round(s["1d"], 6) for s in start.scores.values()}) > 1  # the candidates differ on validation


def _scores(means: dict, rank_ics: dict) -> dict:
    """Candidate scores as ``scores_of_terms`` gives them: the means, and each horizon's dates."""
    from atft_kedro.evaluation.metrics import DailyScores
    from atft_kedro.training.starts import BY_DATE

    return {name: {**means[name], BY_DATE: {h: DailyScores(list(range(len(r))), r, r, 0, 1, 0) for h, r in rank_ics[name].items()}}
            for name in means}  # fmt: skip


def test_a_start_beats_none_only_by_more_than_the_margin():
    """``kept_starts`` with a margin: the best candidate replaces ``none`` where its paired per-date
    gain is above margin x its Newey-West standard error (lag h - 1), else ``none`` stays; without
    a margin the best mean wins, however small its lead."""
    from atft_kedro.evaluation.metrics import newey_west_se
    from atft_kedro.training.starts import kept_starts

    rng = np.random.default_rng(0)
    base = rng.normal(0.02, 0.1, 80)
    noise = rng.normal(0.0, 0.05, 80)
    noise -= noise.mean()
    periods = rng.normal(0.0, 0.05, 4)
    steady, shaky = base + 0.03 + 0.01 * noise, base + 0.004 + noise  # a clear gain; a small one, well within its noise
    slow = base + np.repeat(periods - periods.mean() + 0.004, 20)  # 20-day outcomes: one value a 20-date period
    ranks = {"none": {"1d": base, "20d": base}, "fit": {"1d": steady, "20d": slow}, "other": {"1d": shaky, "20d": base - 0.01}}
    means = {n: {h: float(r.mean()) for h, r in by.items()} for n, by in ranks.items()}
    assert kept_starts(_scores(means, ranks), ["1d", "20d"], "none") == {"1d": "fit", "20d": "fit"}
    assert kept_starts(_scores(means, ranks), ["1d", "20d"], "none", margin=1.0) == {"1d": "fit", "20d": "none"}
    se20 = newey_west_se(slow - base, 19)
    assert se20 > 2 * newey_west_se(slow - base, 0)  # the overlapping periods count as the few they are
    # at 1 day the small lead alone: kept by the best mean, not by the margin
    ranks = {"none": {"1d": base}, "other": {"1d": shaky}}
    means = {n: {h: float(r.mean()) for h, r in by.items()} for n, by in ranks.items()}
    gain, se = float((shaky - base).mean()), newey_west_se(shaky - base, 0)
    assert 0 < gain < se
    assert kept_starts(_scores(means, ranks), ["1d"], "none") == {"1d": "other"}
    assert kept_starts(_scores(means, ranks), ["1d"], "none", margin=1.0) == {"1d": "none"}
    assert kept_starts(_scores(means, ranks), ["1d"], "none", margin=0.5 * gain / se) == {"1d": "other"}
    with pytest.raises(ValueError, match="date by date"):
        kept_starts(means, ["1d"], "none", margin=1.0)


def test_the_neighbour_skip_starts_at_none_unless_it_clears_the_margin(prepared):
    """Through ``start_neighbours_at_ridge``: the candidates and their scores do not depend on the
    margin; with a margin no fit clears, every row of the map stays 0 (the previous phase's
    function), and a margin of 0 keeps what the best mean keeps."""
    from atft_kedro.training.starts import BY_DATE, start_neighbours_at_ridge

    arrays, graphs = prepared["arrays"], prepared["graphs"]
    cfg = small_config(model={**small_config().model, "linear_skip": (1, 5), "neighbour_skip": (1, 5), "lead_weights": "neighbour_leads_long"})
    chosen = {}
    for margin in (0.0, 1e9):
        model, train_idx, validation = _model_and_validation(prepared, cfg, 2)
        chosen[margin] = start_neighbours_at_ridge(model, arrays, graphs, train_idx, cfg.window, alpha=50.0, validation=validation, margin=margin)
        if margin:
            assert torch.equal(model.neighbour.linear.weight, torch.zeros_like(model.neighbour.linear.weight))
    none = "none (the previous phase's function)"
    assert chosen[1e9].kept == {"1d": none, "5d": none}
    assert chosen[0.0].kept == {h: max(chosen[0.0].scores, key=lambda n: (chosen[0.0].scores[n][h], n != none)) for h in ("1d", "5d")}
    assert any(k != none for k in chosen[0.0].kept.values())  # the margin changed something here
    for name, s in chosen[0.0].scores.items():
        assert {h: s[h] for h in ("1d", "5d")} == {h: chosen[1e9].scores[name][h] for h in ("1d", "5d")}
        assert s[BY_DATE]["1d"].rank_ic.mean() == pytest.approx(s["1d"])
    for bad in (-1.0, "1", float("nan")):  # a string or NaN: the same message, not a TypeError or a silent pass
        with pytest.raises(ValueError, match="neighbour_start_margin"):
            small_config(neighbour_start_margin=bad)


def test_the_horizons_phase_1_turns_on_start_where_validation_says(prepared):
    """horizon_starts=validated: the linear skip's rows of the horizons a phase turns on start at
    the best on validation of the ridge start they hold, the ridge at other penalties, and 20-day
    momentum or 1-day reversal alone (one column, the baseline's sign); the other rows keep their
    start. Each candidate's score is the model's own (loaded and predicted in full, it scores the same)."""
    from atft_kedro.evaluation.baselines import SIGNALS
    from atft_kedro.training.starts import START_PENALTIES, choose_skip_starts, start_at_ridge

    arrays = prepared["arrays"]
    model, train_idx, validation = _model_and_validation(prepared, small_config(model={**small_config().model, "linear_skip": (1, 5, 10, 20)}), 1)
    forecast, rank_ics = validation.forecast, validation.rank_ics
    start_at_ridge(model, arrays, train_idx, alpha=50.0)
    before = copy.deepcopy(model.linear.state_dict())
    rng = torch.get_rng_state()
    choice = choose_skip_starts(model, arrays, train_idx, 50.0, (5, 10, 20), validation)
    assert torch.equal(torch.get_rng_state(), rng)  # the choice leaves the phase's random draws as they were
    held = "the ridge start"
    assert set(choice.starts) == {held, *(f"the ridge at penalty {50.0 * k:g}" for k in START_PENALTIES), *(f"{n} alone" for n in SIGNALS)}
    assert torch.equal(choice.starts[held]["weight"], before["weight"])
    momentum, reversal = (arrays.feature_names.index(f) for f in ("ret_20d", "ret_1d"))
    alone = choice.starts["momentum_20d alone"]["weight"]
    assert (alone[:, momentum] > 0).all() and int((alone != 0).sum()) == len(alone)  # one column, the baseline's sign
    assert (choice.starts["reversal_1d alone"]["weight"][:, reversal] < 0).all()
    after = model.linear.state_dict()
    assert torch.equal(after["weight"][0], before["weight"][0]) and torch.equal(after["bias"][0], before["bias"][0])  # 1 day: not turned on here
    for i, h in enumerate(("5d", "10d", "20d"), start=1):
        assert choice.kept[h] == max(choice.scores, key=lambda n: (choice.scores[n][h], n != held))
        assert torch.equal(after["weight"][i], choice.starts[choice.kept[h]]["weight"][i])
    for name, weights in choice.starts.items():  # each candidate's rows in the model, predicted in full
        state = copy.deepcopy(before)
        state["weight"][1:], state["bias"][1:] = weights["weight"][1:], weights["bias"][1:]
        model.linear.load_state_dict(state)
        full = rank_ics(forecast(model))
        for h in ("5d", "10d", "20d"):
            assert choice.scores[name][h] == pytest.approx(full[h], abs=1e-6), (name, h)
    assert len({round(s["20d"], 6) for s in choice.scores.values()}) > 1  # the candidates differ on validation
    with pytest.raises(ValueError, match="horizon_starts must be 'ridge', 'validated', 'ranked', 'one_day', 'covariance' or 'momentum'"):
        small_config(horizon_starts="sideways")


def test_the_horizons_phase_1_turns_on_may_start_at_a_fit_on_ranked_targets(prepared):
    """horizon_starts=ranked: the rows of the horizons a phase turns on keep the ridge start they
    hold or take the same ridge fitted on each date's targets as ranks, whichever validation ranks
    higher at that horizon; the ranked fit is the ridge of the ranks, and the 1-day row is left alone."""
    from atft_kedro.training.starts import choose_skip_starts, ranked_by_date, set_to_ridge, start_at_ridge, training_rows

    arrays = prepared["arrays"]
    model, train_idx, validation = _model_and_validation(prepared, small_config(model={**small_config().model, "linear_skip": (1, 5, 10, 20)}), 1)
    start_at_ridge(model, arrays, train_idx, alpha=50.0)
    before = copy.deepcopy(model.linear.state_dict())
    choice = choose_skip_starts(model, arrays, train_idx, 50.0, (5, 10, 20), validation, "ranked")
    held, ranked = "the ridge start", "the ridge fitted on each date's targets as ranks"
    assert set(choice.starts) == {held, ranked}
    x, y = training_rows(arrays, train_idx, model.target_scale.cpu().numpy())
    probe = torch.nn.Linear(model.linear.in_features, len(model.skip_horizons)).double()
    set_to_ridge(probe, model.skip_horizons, x, ranked_by_date(y, arrays.present[train_idx].sum(1)), 50.0)
    assert torch.allclose(choice.starts[ranked]["weight"].double(), probe.weight, atol=1e-6)
    assert not torch.allclose(choice.starts[ranked]["weight"], before["weight"])  # ranks are not the returns
    after = model.linear.state_dict()
    assert torch.equal(after["weight"][0], before["weight"][0])
    for i, h in enumerate(("5d", "10d", "20d"), start=1):
        assert choice.kept[h] == max(choice.scores, key=lambda n: (choice.scores[n][h], n != held))
        assert torch.equal(after["weight"][i], choice.starts[choice.kept[h]]["weight"][i])
    with pytest.raises(ValueError, match="'validated' or 'ranked'"):
        choose_skip_starts(model, arrays, train_idx, 50.0, (5,), validation, "momentum")


def test_the_linear_skip_reads_its_inputs_winsorised_at_the_clip_validation_chose(prepared):
    """skip_clips: phase 0's ridge start fits its 1-day row on the features as they are and
    winsorised at each clip, and keeps the fit with the best validation RankIC at 1 day, with its
    clip; the rows of the horizons phase 0 does not score keep their fit on the features as they
    are. The forward pass winsorises each row's inputs at its own clip, in the own-feature skip
    alone. Each candidate's score is the model's own (loaded with its clip and predicted in full,
    it scores the same); a checkpoint from before the clip was kept loads as unclipped."""
    from atft_kedro.training.starts import UNCLIPPED, start_at_one_day, start_at_ridge, training_rows

    arrays = prepared["arrays"]
    model, train_idx, validation = _model_and_validation(prepared, small_config(model={**small_config().model, "linear_skip": (1, 5)}), 0)
    rng = torch.get_rng_state()
    choice = start_at_ridge(model, arrays, train_idx, 50.0, (0.5, 2.0), validation)
    assert torch.equal(torch.get_rng_state(), rng)
    clips = {UNCLIPPED: math.inf, "the ridge on the features winsorised at 0.5": 0.5, "the ridge on the features winsorised at 2": 2.0}
    assert set(choice.starts) == set(clips)
    assert choice.kept == {"1d": max(choice.scores, key=lambda n: choice.scores[n]["1d"])}
    kept = choice.kept["1d"]
    assert model.skip_clip.tolist() == [clips[kept], math.inf]
    assert torch.equal(model.linear.weight, choice.starts[kept]["weight"])
    unclipped = copy.deepcopy(model)
    start_at_ridge(unclipped, arrays, train_idx, 50.0)  # without clips: every row on the features as they are
    assert torch.equal(model.linear.weight[1], unclipped.linear.weight[1]) and torch.equal(model.linear.bias[1], unclipped.linear.bias[1])
    for name, clip in clips.items():
        model.linear.load_state_dict(choice.starts[name])
        model.skip_clip[0] = clip
        assert choice.scores[name]["1d"] == pytest.approx(validation.rank_ics(validation.forecast(model))["1d"], abs=1e-6), name
    assert len({round(s["1d"], 6) for s in choice.scores.values()}) == 3  # the clips fit and rank differently
    item = collate_dates([validation.dataset[0]])
    x = item.x.clone()
    x[:, -1] = 4.0 * x[:, -1]  # the last day's features, several beyond the clip
    model.eval()
    with torch.no_grad():
        parts = model(x, item.market, item.date_of_node, item.neighbors, item.edge_attr, parts=True)["parts"]  # the model as of phase 0: 1 day
        clipped = model.linear(x[:, -1].clamp(-2.0, 2.0))[:, 0] * model.target_scale[0]
        model.skip_clip[0] = math.inf
        plain = model(x, item.market, item.date_of_node, item.neighbors, item.edge_attr, parts=True)["parts"]["1d"][:, 1]
    assert torch.allclose(parts["1d"][:, 1], clipped, atol=1e-7) and not torch.allclose(plain, clipped, atol=1e-4)
    assert torch.equal(plain, model.linear(x[:, -1])[:, 0] * model.target_scale[0])  # no clip: the plain map's bits
    model.skip_clip[0] = 2.0
    saved = copy.deepcopy(model.state_dict())
    model.skip_clip.fill_(0.5)
    model.load_state_dict(saved)
    assert model.skip_clip.tolist() == [2.0, math.inf]  # the clips travel with the weights
    model.load_state_dict({k: v for k, v in saved.items() if k != "skip_clip"})
    assert model.skip_clip.tolist() == [math.inf, math.inf]
    x_train, _ = training_rows(arrays, train_idx, model.target_scale.numpy())
    assert np.abs(x_train).max() > 2.0  # the training features reach beyond the clips tried
    model.skip_clip[0] = 2.0
    start_at_one_day(model, (5,))  # horizon_starts=one_day: the 5-day row reads the features as the 1-day row does
    assert model.skip_clip.tolist() == [2.0, 2.0] and torch.equal(model.linear.weight[1], model.linear.weight[0])
    for bad in ([1.0, 0.0], [1.0, "2"], [float("inf")]):  # a clip at infinity is none: leave it out instead
        with pytest.raises(ValueError, match="skip_clips are robust z-scores"):
            small_config(skip_clips=bad)


def test_the_long_rows_of_the_linear_skip_may_start_at_a_penalty_of_their_own(prepared):
    """long_ridge_alpha: the rows of the horizons phase 0 does not train (5 days here) are fitted at
    that penalty, with and without the 1-day row's choice of clip; the 1-day row is the fit at
    linear_ridge_alpha either way, and a penalty that is not a positive number is refused."""
    from atft_kedro.training.starts import set_to_ridge, start_at_ridge, training_rows

    arrays = prepared["arrays"]
    cfg = small_config(model={**small_config().model, "linear_skip": (1, 5)})
    for clips in ((), (1.0,)):
        plain, train_idx, validation = _model_and_validation(prepared, cfg, 0)
        own = copy.deepcopy(plain)
        start_at_ridge(plain, arrays, train_idx, 50.0, clips, validation)
        start_at_ridge(own, arrays, train_idx, 50.0, clips, validation, long_alpha=5000.0)
        assert torch.equal(own.linear.weight[0], plain.linear.weight[0]) and torch.equal(own.skip_clip, plain.skip_clip)
        x, y = training_rows(arrays, train_idx, own.target_scale.numpy())
        expected = copy.deepcopy(own.linear)
        set_to_ridge(expected, own.skip_horizons, x, y, 5000.0, only=(5,))
        assert torch.equal(own.linear.weight[1], expected.weight[1]) and torch.equal(own.linear.bias[1], expected.bias[1])
        ratio = float(own.linear.weight[1].detach().norm() / plain.linear.weight[1].detach().norm())
        assert ratio < 0.9, clips  # a hundred times the penalty: a smaller map
    for bad in (0.0, -1.0, "1e5", float("nan")):
        with pytest.raises(ValueError, match="long_ridge_alpha is the 5-20 day rows' ridge penalty"):
            small_config(long_ridge_alpha=bad)


def test_the_linear_skip_may_also_start_at_fits_on_each_dates_targets_as_ranks(prepared):
    """skip_targets [raw, rank]: every clip's fit is also made on each date's targets as the normal
    scores of their ranks, and validation picks among all; a date's ranks ignore how far its extreme
    returns reach, so a return made ten times larger moves the raw fit and not the ranked one."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    from atft_kedro.training.starts import UNCLIPPED, ranked_by_date, start_at_ridge, training_rows

    arrays = prepared["arrays"]
    model, train_idx, validation = _model_and_validation(prepared, small_config(model={**small_config().model, "linear_skip": (1,)}), 0)
    sizes = arrays.present[np.asarray(train_idx)].sum(1)
    ranks_of = lambda a: ranked_by_date(training_rows(a, train_idx, model.target_scale.numpy())[1], sizes)  # noqa: E731
    choice = start_at_ridge(model, arrays, train_idx, 50.0, (1.0,), validation, ("raw", "rank"))
    ranked = ", fitted on each date's targets as ranks"
    names = {UNCLIPPED, "the ridge on the features winsorised at 1"}
    assert set(choice.starts) == names | {n + ranked for n in names}
    assert choice.kept == {"1d": max(choice.scores, key=lambda n: (choice.scores[n]["1d"], n == UNCLIPPED))}
    assert len({round(s["1d"], 6) for s in choice.scores.values()}) == 4
    assert not torch.equal(choice.starts[UNCLIPPED]["weight"], choice.starts[UNCLIPPED + ranked]["weight"])
    y = ranks_of(arrays)
    t = int(train_idx[0])
    first = np.asarray(arrays.targets[t, np.flatnonzero(arrays.present[t])], dtype=np.float64)
    ok = np.isfinite(first[:, 0])
    np.testing.assert_allclose(y[: len(first)][ok, 0], ndtri((rankdata(first[ok, 0]) - 0.5) / ok.sum()), rtol=1e-12)
    assert np.isnan(y[: len(first)][~np.isfinite(first[:, 0]), 0]).all()
    extreme = copy.deepcopy(arrays)
    top = np.flatnonzero(arrays.present[t])[np.nanargmax(first[:, 0])]
    extreme.targets[t, top, 0] *= 10.0
    assert np.array_equal(ranks_of(extreme), y, equal_nan=True)
    assert not np.array_equal(training_rows(extreme, train_idx, model.target_scale.numpy())[1],
                              training_rows(arrays, train_idx, model.target_scale.numpy())[1], equal_nan=True)  # fmt: skip
    with pytest.raises(ValueError, match="skip_targets are the targets"):
        small_config(skip_targets=["rank"])


def test_each_horizon_keeps_its_best_start_and_a_fit_over_none_on_ties():
    """``kept_starts``: per horizon the best score; a NaN (no valid validation date) is the worst;
    on a tie a fit is kept over no skip, then the first candidate."""
    from atft_kedro.training.starts import kept_starts

    none = "none"
    scores = {none: {"1d": 0.03, "5d": 0.02, "10d": math.nan}, "beside": {"1d": 0.04, "5d": 0.01, "10d": math.nan},
              "leaves": {"1d": 0.01, "5d": 0.02, "10d": math.nan}}  # fmt: skip
    assert kept_starts(scores, ["1d", "5d", "10d"], none) == {"1d": "beside", "5d": "leaves", "10d": "beside"}
    assert kept_starts({none: {"1d": 0.05}, "beside": {"1d": math.nan}}, ["1d"], none) == {"1d": none}


def test_a_forecast_that_ranks_backwards_gets_the_fit_of_what_it_leaves():
    """set_beside_forecast: where the ridge beside the forecast gives the forecast a weight <= 0,
    the skip is the ridge fit of what the forecast leaves; otherwise forecast + skip is a positive
    multiple of the fit beside it."""
    from atft_kedro.evaluation.baselines import ridge_solve
    from atft_kedro.training.starts import design_moments, set_beside_forecast

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    y = np.zeros((500, 4))
    y[:, 0] = x @ [0.5, -0.2, 0.1] + rng.normal(size=500)
    for sign, col in ((-1.0, 0), (1.0, 0)):
        forecast = np.zeros((500, 4))
        forecast[:, col] = sign * 4.0 * (y[:, col] + rng.normal(size=500))
        linear = torch.nn.Linear(3, 1).double()
        set_beside_forecast(linear, (1,), design_moments(x, y, forecast, (1,)), alpha=5.0)
        w, b = linear.weight[0].detach().numpy(), float(linear.bias[0].detach())
        if sign < 0:
            np.testing.assert_allclose(np.append(w, b), ridge_solve(x, y[:, 0] - forecast[:, 0], 5.0), rtol=1e-10)
        else:
            joint = ridge_solve(np.hstack([x, forecast[:, :1]]), y[:, 0], 5.0)
            assert joint[3] > 0
            np.testing.assert_allclose(np.append(w, b) * joint[3], np.append(joint[:3], joint[4]), rtol=1e-10)


def test_the_neighbour_fits_from_summed_moments_are_the_fits_of_the_rows():
    """The neighbour skip's fits come from per-date moments summed (``design_moments``,
    ``ridge_of_moments``), never from the rows held together: the same coefficients as the ridge
    on the stacked rows' design (``with_intercept``), beside the forecast and on what it leaves,
    with columns read as 0, where a horizon's targets are missing on some rows."""
    from atft_kedro.evaluation.baselines import solve_ridge_design, with_intercept
    from atft_kedro.training.starts import design_moments, ridge_of_moments

    rng = np.random.default_rng(1)
    x, forecast = rng.normal(size=(900, 6)), rng.normal(size=(900, 4))
    y = x @ rng.normal(size=(6, 4)) + forecast + rng.normal(size=(900, 4))
    y[rng.random(900) < 0.1, 3] = np.nan  # the 20-day target missing on some rows
    dates = np.split(np.arange(900), [250, 600])
    parts = [design_moments(x[d], y[d], forecast[d], (1, 20)) for d in dates]
    summed = {h: sum(p[h] for p in parts) for h in (1, 20)}
    for h in (1, 20):
        col = (1, 5, 10, 20).index(h)
        ok = np.isfinite(y[:, col])
        for zeroed in (0, 2):
            beside = solve_ridge_design(with_intercept(x, ok, extra=forecast[:, col : col + 1], zeroed=zeroed), y[ok, col], 5.0)
            leaves = solve_ridge_design(with_intercept(x, ok, zeroed=zeroed), y[ok, col] - forecast[ok, col], 5.0)
            np.testing.assert_allclose(ridge_of_moments(summed[h], 5.0, beside=True, zeroed=zeroed), beside, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(ridge_of_moments(summed[h], 5.0, beside=False, zeroed=zeroed), leaves, rtol=1e-9, atol=1e-12)
            assert (ridge_of_moments(summed[h], 5.0, beside=True, zeroed=zeroed)[:zeroed] == 0).all()
        assert abs(beside[-2]) > 0.5  # the forecast carries weight in the joint fit: the two fits differ
        assert not np.allclose(beside[:6], leaves[:6])


def test_the_linear_skip_fits_from_summed_moments_are_the_fits_of_the_rows(prepared):
    """The linear skip's start solves each fit from per-date products summed (``skip_moments``),
    never from the training rows held together: the coefficients of the ridge on the stacked rows'
    design (``with_intercept``), on the features as they are and winsorised, on the targets and on
    each date's rank scores, where a horizon's targets are missing on some rows."""
    from atft_kedro.evaluation.baselines import solve_ridge_design, solve_ridge_gram, with_intercept
    from atft_kedro.training.starts import ranked_by_date, skip_moments, training_rows

    arrays = copy.deepcopy(prepared["arrays"])
    train_idx = _idx(prepared)[0][:30]
    rng = np.random.default_rng(2)
    arrays.targets[train_idx[3:9], :, 3] = np.where(rng.random((6, arrays.targets.shape[1])) < 0.3, np.nan, arrays.targets[train_idx[3:9], :, 3])
    scale = np.array([0.02, 0.04, 0.06, 0.08])
    wanted = {(math.inf, 1), (math.inf, 20), (1.0, 1), (1.0, 20)}
    moments = skip_moments(arrays, train_idx, scale, wanted, ranked=True)
    assert set(moments) == wanted
    x, y = training_rows(arrays, train_idx, scale)
    ranks = ranked_by_date(y, arrays.present[train_idx].sum(1))
    n = x.shape[1] + 1
    assert not np.isfinite(y[:, 3]).all() and np.abs(x).max() > 1.0  # missing targets, and features beyond the clip
    for clip, h in wanted:
        col = (1, 5, 10, 20).index(h)
        ok = np.isfinite(y[:, col])
        design = with_intercept(x, ok, clip)
        for k, target in enumerate((y, ranks)):
            np.testing.assert_allclose(solve_ridge_gram(moments[clip, h][:n, :n].clone(), moments[clip, h][:n, n + k].clone(), 50.0),
                                       solve_ridge_design(design, target[ok, col], 50.0), rtol=1e-9, atol=1e-12)  # fmt: skip
    assert not torch.allclose(moments[1.0, 1], moments[math.inf, 1])


def test_a_phase_never_ends_below_its_start_on_validation(prepared, tmp_path):
    """keep_start: the starting weights are the phase's epoch -1. Phase 1 starts as phase 0's best
    function (FAN enters at scale 0), so its best validation metric is at least phase 0's, and when
    no epoch beats the start, the start's weights are what phase 1 hands on."""
    store = CheckpointStore(tmp_path)
    _train(prepared, store, phase=0, epochs=2)
    _train(prepared, store, phase=1, epochs=2, lr=0.5)  # a rate that wrecks what phase 0 learnt
    first, second = store.load(0, "best"), store.load(1, "best")
    assert second["best"] >= first["best"] - 1e-12
    history = store.load(1, "last")["history"]
    assert second["best"] >= max(row["val_metric"] for row in history)
    if second["epoch"] == -1:
        assert all(torch.equal(second["model"][k], first["model"][k]) for k in first["model"] if "n_averaged" not in k)
    off = CheckpointStore(tmp_path / "off")
    _train(prepared, off, phase=0, epochs=2, keep_start=False)
    assert off.load(0, "best")["epoch"] >= 0


@pytest.mark.parametrize("mode", ["optimized", "safe"])
def test_what_a_step_reads_from_the_device(prepared, tmp_path, mode):
    """What would make a CUDA step wait for the device, counted on the CPU (HostReads). An optimized
    step reads nothing: it skips a non-finite step on the device, and the loss parts, the GAT
    gradient norms, the finite flags and the weight average's counter are read once when the epoch
    ends. A safe step reads one thing: whether its batch and loss are finite, to skip it or not.
    Counted over epochs of 2 and of 4 steps: the difference is the steps' own reads."""
    from atft_kedro.training.host_reads import reads_per_epoch

    store = CheckpointStore(tmp_path)
    _train(prepared, store, phase=0, epochs=1)
    _train(prepared, store, phase=1, epochs=1)
    per = 4 if mode == "optimized" else 1
    with reads_per_epoch() as counted:
        for steps in (2, 4):  # phase 2 (everything on)
            _train(prepared, store, phase=2, epochs=1, mode=mode, dates_per_batch=per, max_train_dates=steps * per)
    short, long = counted[2], counted[4]
    assert long.calls - short.calls == ({} if mode == "optimized" else {"__bool__": 2}), (short.calls, long.calls)
    assert short.total <= 10, short.calls  # the epoch's own reads: a handful


def test_host_reads_counts_what_waits_for_the_device():
    from atft_kedro.training.host_reads import HostReads

    x = torch.randn(6)
    with HostReads() as reads:
        y = (x * 2).sum()  # device work only
        z = x + y
    assert reads.total == 0
    with HostReads() as reads:
        float(y), bool(y > 0), x.tolist(), z[0].item(), torch.unique(x), x[x > 0], torch.nonzero(x)
    assert reads.calls == {"__float__": 1, "__bool__": 1, "tolist": 1, "item": 1, "unique": 1, "__getitem__[bool]": 1, "nonzero": 1}


def test_a_step_never_has_only_a_few_dates_left_over():
    """The dates of an epoch are spread evenly over its steps (the Sharpe term across a step's
    dates is unbounded on two or three), every date once; with two ranks, each has a date in every
    step and a step holds at most dates_per_batch + 1."""
    steps = step_shares(list(range(298)), 8, Ranks())
    assert len(steps) == 38 and {len(s) for s in steps} == {7, 8} and sorted(sum(steps, [])) == list(range(298))
    assert step_shares(list(range(16)), 8, Ranks()) == [list(range(8)), list(range(8, 16))]
    assert step_shares([], 8, Ranks()) == [] and step_shares([5], 8, Ranks()) == [[5]]
    for n, per in [(5, 2), (7, 4), (3, 2), (9, 8), (298, 8)]:
        shares = [step_shares(list(range(n)), per, Ranks(rank=r, world=2)) for r in (0, 1)]
        assert len(shares[0]) == len(shares[1]) and all(a and b for a, b in zip(*shares)), (n, per)
        assert sorted(t for rank in shares for s in rank for t in s) == list(range(n))
        assert max(len(a) + len(b) for a, b in zip(*shares)) <= per + 1


def test_horizons_phase_1_turns_on_can_start_at_the_1d_row(prepared, tmp_path):
    """horizon_starts=one_day: when phase 1 turns the 5-20 day horizons on, their rows of the
    linear skip start at the 1-day row of phase 0's best checkpoint (their forecasts then rank as
    its 1-day path); with the default they keep their own ridge starts."""
    from dataclasses import replace

    from atft_kedro.training.loop import _start_state

    arrays, graphs = prepared["arrays"], prepared["graphs"]
    cfg = small_config(model={**small_config().model, "linear_skip": (1, 5, 10, 20)}, horizon_starts="one_day")
    store = CheckpointStore(tmp_path)
    _train(prepared, store, phase=0, model=cfg.model, horizon_starts="one_day")
    zero = store.load(0, "best")["model"]
    for starts in ("one_day", "ridge"):
        model = build_model(arrays, graphs, replace(cfg, horizon_starts=starts), 1, torch.device("cpu"))
        optimizer = torch.optim.AdamW(model.parameters())
        _start_state(1, model, optimizer, arrays, graphs, _idx(prepared)[0], replace(cfg, horizon_starts=starts), store, [])
        w, b = model.linear.weight, model.linear.bias
        assert torch.equal(w[0], zero["linear.weight"][0])  # the 1-day row as phase 0 left it
        for i in (1, 2, 3):
            same = torch.equal(w[i], w[0]) and torch.equal(b[i], b[0])
            assert same == (starts == "one_day")
            if starts == "ridge":
                assert torch.equal(w[i], zero["linear.weight"][i])  # its own ridge start


def test_horizons_phase_1_turns_on_can_start_at_the_ridges_infinite_penalty_limit(prepared, tmp_path):
    """horizon_starts=covariance: when phase 1 turns the 5-20 day horizons on, each of their rows
    of the linear skip is the training rows' covariance of each feature with the horizon's target,
    scaled by least squares: it ranks as the ridge does at a penalty far above the design's scale,
    the scale leaves a residual with no part along the term, and the 1-day row is phase 0's."""

    from atft_kedro.training.loop import _start_state
    from atft_kedro.training.starts import set_to_ridge, training_rows

    arrays, graphs = prepared["arrays"], prepared["graphs"]
    cfg = small_config(model={**small_config().model, "linear_skip": (1, 5, 10, 20)}, horizon_starts="covariance", linear_start="ridge")
    store = CheckpointStore(tmp_path)
    _train(prepared, store, phase=0, model=cfg.model, horizon_starts="covariance", linear_start="ridge")
    zero = store.load(0, "best")["model"]
    model = build_model(arrays, graphs, cfg, 1, torch.device("cpu"))
    train_idx = _idx(prepared)[0]
    progress = _start_state(1, model, torch.optim.AdamW(model.parameters()), arrays, graphs, train_idx, cfg, store, [])
    assert progress.starts["phase 1, linear skip"] == {h: "the covariance fit" for h in ("5d", "10d", "20d")}
    w, b = model.linear.weight.detach().double(), model.linear.bias.detach().double()
    assert torch.equal(model.linear.weight[0], zero["linear.weight"][0])
    x, y = training_rows(arrays, train_idx, model.target_scale.cpu().numpy())
    far = torch.nn.Linear(x.shape[1], 4).double()
    set_to_ridge(far, (1, 5, 10, 20), x, y, 1e12)
    for i in (1, 2, 3):
        ok = np.isfinite(y[:, i])
        term = x[ok] @ w[i].numpy() + float(b[i])
        assert np.corrcoef(term, x[ok] @ far.weight[i].detach().numpy())[0, 1] > 0.9999  # the ridge's ranking, far out
        assert abs(np.mean(term)) < 1e-5 * np.std(term)  # centred on the training rows (float32 weights)
        assert abs(float((y[ok, i] - term) @ term)) < 1e-4 * float(term @ term)  # the least-squares scale
        assert not torch.allclose(w[i], zero["linear.weight"][i].double())  # not the ridge start at the configured penalty


def test_horizons_phase_1_turns_on_can_start_at_one_feature_scaled(prepared, tmp_path):
    """horizon_starts=momentum: when phase 1 turns the 5-20 day horizons on, each of their rows of
    the linear skip reads ``momentum_feature`` alone, centred on the training rows and scaled by
    least squares; the 1-day row is phase 0's; a feature the model lacks is named in the error."""
    from atft_kedro.training.loop import _start_state
    from atft_kedro.training.starts import training_rows

    arrays, graphs = prepared["arrays"], prepared["graphs"]
    model_cfg = {**small_config().model, "linear_skip": (1, 5, 10, 20)}
    cfg = small_config(model=model_cfg, horizon_starts="momentum", momentum_feature="ret_20d", linear_start="ridge")
    store = CheckpointStore(tmp_path)
    _train(prepared, store, phase=0, model=model_cfg, horizon_starts="momentum", momentum_feature="ret_20d", linear_start="ridge")
    zero = store.load(0, "best")["model"]
    model = build_model(arrays, graphs, cfg, 1, torch.device("cpu"))
    train_idx = _idx(prepared)[0]
    progress = _start_state(1, model, torch.optim.AdamW(model.parameters()), arrays, graphs, train_idx, cfg, store, [])
    assert progress.starts["phase 1, linear skip"] == {h: "ret_20d, scaled" for h in ("5d", "10d", "20d")}
    assert torch.equal(model.linear.weight[0], zero["linear.weight"][0])
    j = arrays.feature_names.index("ret_20d")
    w, b = model.linear.weight.detach().double(), model.linear.bias.detach().double()
    x, y = training_rows(arrays, train_idx, model.target_scale.cpu().numpy())
    for i in (1, 2, 3):
        others = torch.cat([w[i, :j], w[i, j + 1 :]])
        assert torch.count_nonzero(others) == 0 and w[i, j] != 0  # the one feature
        ok = np.isfinite(y[:, i])
        term = x[ok, j] * float(w[i, j]) + float(b[i])
        assert abs(np.mean(term)) < 1e-5 * np.std(term)  # centred on the training rows
        assert abs(float((y[ok, i] - term) @ term)) < 1e-4 * float(term @ term)  # the least-squares scale
        slope = np.polyfit(x[ok, j], y[ok, i], 1)[0]
        assert np.isclose(float(w[i, j]), slope, rtol=1e-4)  # the training rows' own slope, sign included
    wrong = small_config(model=model_cfg, horizon_starts="momentum", momentum_feature="ret_61d", linear_start="ridge")
    fresh = build_model(arrays, graphs, wrong, 1, torch.device("cpu"))
    with pytest.raises(ValueError, match="momentum_feature is 'ret_61d', which is not among the model's features"):
        _start_state(1, fresh, torch.optim.AdamW(fresh.parameters()), arrays, graphs, train_idx, wrong, store, [])


def test_the_linear_paths_may_learn_at_a_fraction_of_the_rate(prepared, tmp_path):
    """``skip_lr_scale``: the two ridge-started linear paths in an optimizer group of their own at that
    fraction of the rate (at 1 one group, as before); at 0 an epoch leaves the linear skip at its ridge
    start while the rest trains, at 0.1 it moves less far than at the full rate."""
    from atft_kedro.training.loop import parameter_groups

    model_cfg = {**small_config().model, "linear_skip": (1,)}
    weights = {}
    for name, kw in {"start": {"lr": 0.0}, "frozen": {"skip_lr_scale": 0.0}, "slow": {"skip_lr_scale": 0.1}, "full": {}}.items():
        store = CheckpointStore(tmp_path / name)
        _train(prepared, store, epochs=1, linear_start="ridge", model=model_cfg, **kw)
        weights[name] = store.load(0, "last")["train_weights"]
    skip = [k for k in weights["start"] if k.startswith("linear.")]
    assert skip and all(torch.equal(weights["frozen"][k], weights["start"][k]) for k in skip)
    assert any(not torch.equal(weights["frozen"][k], weights["start"][k]) for k in weights["start"] if k.startswith("heads."))
    moved = {n: sum(float((weights[n][k] - weights["start"][k]).norm()) for k in skip) for n in ("slow", "full")}
    assert 0 < moved["slow"] < 0.5 * moved["full"], moved

    model = build_model(prepared["arrays"], prepared["graphs"], small_config(model={**model_cfg, "neighbour_skip": (1,)}), 2, torch.device("cpu"))
    assert [len(g["params"]) for g in parameter_groups(model, 1e-3, 1.0)] == [len(list(model.parameters()))]
    rest, paths = parameter_groups(model, 1e-3, 0.1)
    assert paths["lr"] == pytest.approx(1e-4) and "lr" not in rest
    assert {id(p) for p in paths["params"]} == {id(p) for part in (model.linear, model.neighbour) for p in part.parameters()}
    assert len(rest["params"]) + len(paths["params"]) == len(list(model.parameters()))
    for bad in (-1.0, "0.1", float("inf")):
        with pytest.raises(ValueError, match="skip_lr_scale is a fraction of the learning rate"):
            small_config(skip_lr_scale=bad)


def test_the_history_plot_draws_the_gat_share_where_phase_2_has_one():
    """The gate panel carries the GAT's share (``gat_start`` "previous") beside the fusion gate, and
    leaves it out of histories without one (the seed's fusion, or no GAT phase yet)."""
    import polars as pl

    from atft_kedro.training.history import plot_history

    def labels(gat_share):
        rows = [{"phase": p, "epoch": 0, "seconds": 1.0, "train_loss": -0.01, "val_rank_ic_1d": 0.03,
                 "gat_grad_norm": 0.1 if p == 2 else math.nan, "fusion_gate": 0.5 if p == 2 else math.nan,
                 "gat_share": gat_share if p == 2 else math.nan} for p in (0, 1, 2)]  # fmt: skip
        fig = plot_history(pl.DataFrame(rows))
        return [t.get_text() for t in fig.axes[2].get_legend().get_texts()], fig.axes[2].get_title()

    assert labels(0.2) == (["GAT grad norm (left)", "fusion gate s (right)", "GAT share a (right)"], "GAT gradient norm (log), fusion gate and GAT share")
    assert labels(math.nan) == (["GAT grad norm (left)", "fusion gate s (right)"], "GAT gradient norm (log) and fusion gate")


def test_the_history_plot_says_which_validation_columns_read_neutral_targets():
    """With ``targets: neutral_long`` validation at 5-20 days reads returns with sectors and beta
    out, and the plot's legend says so; the node passes the config's horizons."""
    import polars as pl

    from atft_kedro.pipelines.training.nodes import plot_training_history

    rows = [{"phase": 1, "epoch": e, "seconds": 1.0, "train_loss": -0.01, "gat_grad_norm": math.nan, "fusion_gate": math.nan,
             **{f"val_rank_ic_{h}d": 0.01 * e for h in (1, 5, 10, 20)}} for e in range(2)]  # fmt: skip
    legend = lambda fig: [t.get_text() for t in fig.axes[1].get_legend().get_texts()]  # noqa: E731
    assert legend(plot_training_history(pl.DataFrame(rows), {"targets": "neutral_long"})) == [
        "1d", "5d, sectors and beta out", "10d, sectors and beta out", "20d, sectors and beta out"]  # fmt: skip
    assert legend(plot_training_history(pl.DataFrame(rows), {"targets": "raw"})) == ["1d", "5d", "10d", "20d"]
