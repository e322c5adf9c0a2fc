"""The training loop of one phase: whole cross-sections, early stopping on validation RankIC,
best/last checkpoints every epoch, exact resume after an interruption.

Phases (SPEC section 6): 0 baseline (temporal encoder, 1-day horizon), 1 + FAN/SAN and all
horizons, 2 + GAT and gated fusion, 3 everything at a lower learning rate. Phase N > 0 starts from
phase N-1's best checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np
import torch
from tqdm.auto import tqdm

from atft_kedro.allocator import freed_memory_kept
from atft_kedro.evaluation.report import kept_checkpoint
from atft_kedro.features.targets import HORIZONS
from atft_kedro.graph.store import GraphSet
from atft_kedro.model import ATFTGATFAN, SETTINGS, ModelConfig
from atft_kedro.provenance import check_built_from, code_version, describe
from atft_kedro.threads import torch_threads
from atft_kedro.tracking import dotted
from atft_kedro.training.batches import dates_per_step, device_of, finite_batch, resident_dates, train_batches
from atft_kedro.training.checkpoints import FORMAT, CheckpointStore, TrainingError, load_weights
from atft_kedro.training.config import PHASES, TrainConfig, epochs_of, of_phase, patience_of
from atft_kedro.training import distributed
from atft_kedro.training.data import HORIZON_KEYS, DateDataset, TrainingArrays, typical_returns
from atft_kedro.training.losses import LossWeights
from atft_kedro.training.predict import predict, rank_ic_by_date
from atft_kedro.training.starts import Validation, choose_skip_starts, start_at_covariance, start_at_feature, start_at_one_day, start_at_ridge, start_neighbours_at_ridge
from atft_kedro.training.step import PARTS, DeviceStep, forward_loss, gat_grad_norm


log = logging.getLogger(__name__)

class WeightAverage:
    """Exponential moving average of the weights (Polyak averaging) with the decay as configured
    from the first step, bias-corrected as Adam's moments are: after n updates the average is

        sum_k decay^(n-k) w_k / sum_k decay^(n-k)

    so every step weighs exactly ``decay`` times the next one, and the first steps are not pinned to
    the initial weights (the recursion's lerp weight is (1 - decay) / (1 - decay^n)). One date's
    gradient is mostly that date's noise; validation, checkpoints and predictions use the average
    (docs/what_training_has_shown.md). Parameters and buffers are averaged alike, but for the
    model's ``SETTINGS``, which keep the value they had when the average began.

    Written out rather than torch's ``AveragedModel`` (same arithmetic: a copy, then one fused lerp
    per update): that one keeps its update counter in a tensor and compares it twice an update,
    which on a GPU makes every training step wait for the device. Here the counter is a Python int,
    or, for a step that does not know on the host whether it was taken (``update(model, taken)``),
    a tensor on the device: the lerp weight is then computed there, 0 for a step not taken."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.module = copy.deepcopy(model)
        self.decay, self.updates = decay, 0

    @property
    def updates(self) -> int:
        """The number of updates so far (read from the device when it counts there)."""
        return self._updates if self._on_device is None else int(self._on_device)

    @updates.setter
    def updates(self, n: int) -> None:
        self._updates, self._on_device = int(n), None

    def update(self, model: torch.nn.Module, taken: torch.Tensor | None = None) -> None:
        """One update; ``taken``: a 0-dim bool tensor, whether the step was taken (counted and
        weighed on the device, nothing read back)."""
        floats = lambda m: [t.detach() for t in (*m.parameters(), *(b for n, b in m.named_buffers() if n.rsplit(".", 1)[-1] not in SETTINGS))
                            if t.is_floating_point()]  # noqa: E731  (not an index buffer, not a setting)
        mine, theirs = floats(self.module), floats(model)
        if taken is not None:
            if self._on_device is None:
                self._on_device = torch.full((), float(self._updates), dtype=torch.float64, device=taken.device)
            self._on_device += taken
            # mine (1 - w) + theirs w, the weight a tensor: the first update's is 1 (a copy, exactly),
            # a step not taken gets 0 (no change). Not _foreach_lerp_, which has no tensor-weight
            # overload: it would read the weight back to the host as a Python number.
            weight = torch.where(taken, (1.0 - self.decay) / (1.0 - self.decay**self._on_device), 0.0).to(mine[0].dtype)
            torch._foreach_mul_(mine, 1.0 - weight)
            torch._foreach_add_(mine, torch._foreach_mul(theirs, weight))
            return
        self._updates += 1
        if self._updates == 1:
            torch._foreach_copy_(mine, theirs)
        else:
            torch._foreach_lerp_(mine, theirs, (1.0 - self.decay) / (1.0 - self.decay**self._updates))


def weight_average(model: ATFTGATFAN, decay: float | None) -> WeightAverage | None:
    return WeightAverage(model, decay) if decay else None


def build_model(arrays: TrainingArrays, graphs: GraphSet, cfg: TrainConfig, phase: int, device: torch.device) -> ATFTGATFAN:
    """A new model of ``phase``: the phase's switches in its config, sizes from the arrays and graphs."""
    backend = "auto" if cfg.mode == "optimized" else "torch"
    spec = PHASES[phase]
    model = dict(cfg.model)
    lead = model.pop("lead_weights", None)  # an edge attribute's name -> its index in these graphs
    if lead is None:  # off: no lead-weighted sum, so none to split in bands (lead_bands) or to take of some features only
        model.pop("lead_features", None)
        model["lead_bands"] = ()
    else:
        names = list(graphs.config.get("edge_attributes", []))
        if lead not in names:
            raise ValueError(f"training.model.lead_weights is {lead!r}, which the graphs do not have (they have {names}): rebuild the graphs")
        model["lead_attribute"] = names.index(lead)
    wanted = model.pop("lead_features", None)  # feature names -> their columns in these arrays
    if wanted is not None:
        missing = [n for n in wanted if n not in arrays.feature_names]
        if missing:
            raise ValueError(f"training.model.lead_features names {missing}, which are not among the model's features "
                             f"(the feature manifest): rebuild model_input or drop them")  # fmt: skip
        model["lead_columns"] = tuple(arrays.feature_names.index(n) for n in wanted)
    mcfg = ModelConfig(
        n_features=arrays.features.shape[2], n_market=arrays.market.shape[1], edge_dim=graphs.edge_attr.shape[-1], gat_backend=backend,
        **{**model, "use_fan": spec.use_fan, "use_gat": spec.use_gat, "horizons": spec.horizons},
    )  # fmt: skip
    return ATFTGATFAN(mcfg).to(device)


@contextlib.contextmanager
def _mode_settings(mode: str, threads: int = 1, keep_freed_memory: bool = True):
    """Safe mode runs with torch's deterministic algorithms on ``threads`` CPU threads (0: the
    process's count): by default one, as the seed's safe mode did, so results do not depend on the
    machine's core count and nothing can oversubscribe. A rerun at the same count repeats the bits;
    another count sums in another order (docs/reproducibility.md). Optimized mode keeps every
    thread and the fast algorithms. Both are restored on the way out, so a safe run never slows an
    optimized one after it in the same process. With ``keep_freed_memory`` glibc keeps what large
    tensors free for the next step (``allocator.freed_memory_kept``)."""
    deterministic, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(mode == "safe", warn_only=True)
    try:
        with torch_threads((threads or torch.get_num_threads()) if mode == "safe" else torch.get_num_threads()), freed_memory_kept(keep_freed_memory):
            yield
    finally:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def train_phase(
    phase: int,
    arrays: TrainingArrays,
    graphs: GraphSet,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: TrainConfig,
    store: CheckpointStore,
    manifest: list[dict],
    *,
    on_epoch_end=None,
    progress: bool = True,
    followed_by: tuple[int, ...] = (),
) -> list[dict]:
    """Train one phase; returns its per-epoch history. Checkpoints go to ``store``. ``followed_by``:
    the phases this run trains next (a phase trained again makes the later ones stale, and the log
    names those that no one is about to retrain)."""
    with _mode_settings(cfg.mode, cfg.threads, cfg.keep_freed_memory):
        return _train_phase(phase, arrays, graphs, train_idx, val_idx, cfg, store, manifest, on_epoch_end, progress, followed_by)


def _warn_retraining(phase: int, store: CheckpointStore, followed_by: tuple[int, ...], why: str = "") -> None:
    """A phase that ran before starts over (``why``, where the log has not said it yet): its
    checkpoints are replaced, and the later phases built on its old best are stale until they are
    trained again."""
    log.warning("phase %d ran before; training it again from the start replaces its checkpoints in %s%s.%s",
                phase, store.path(phase, "last").parent, f" ({why})" if why else "", _stale(phase, store, followed_by))  # fmt: skip


def _warn_stale(phase: int, store: CheckpointStore, followed_by: tuple[int, ...], what: str) -> None:
    """``what`` happens to a finished phase: the later ones built on it, and not about to be trained, are stale."""
    if stale := _stale(phase, store, followed_by):
        log.warning("%s.%s", what, stale)


def _stale(phase: int, store: CheckpointStore, followed_by: tuple[int, ...]) -> str:
    """What to say of the phases after ``phase`` in ``store`` that this run does not train next."""
    later = [p for p in PHASES if p > phase and p not in followed_by and store.exists(p, "last")]
    if not later:
        return ""
    runs = ", then ".join(f"phase={p}" for p in later)
    return (f" Phase(s) {', '.join(map(str, later))} were trained from the old phase {phase} and are now stale: "
            f"rerun them (kedro run --pipelines training --params {runs}) or run phase=all.")  # fmt: skip


def _follows(store: CheckpointStore, phase: int, last: dict) -> bool:
    """Whether ``last`` (``phase``'s last checkpoint) was saved after the phase before it last was:
    it was trained from that phase's best, not from one trained since."""
    if phase == 0:
        return True
    if not store.exists(phase - 1, "last"):
        return False
    return store.load(phase - 1, "last").get("saved_ns", math.inf) < last.get("saved_ns", -1)


def finished_before(sequence: list[tuple[CheckpointStore, int]], cfg: TrainConfig, arrays: TrainingArrays) -> int:
    """How many of ``sequence`` (a run's phases in the order it trains them, each with the store
    of its fold) an interrupted run of the same data and training settings finished: the longest
    prefix whose last checkpoints are finished, of these data, this code (``code_version``) and the
    settings each phase depends on (``cfg`` less the other phases' epochs and patience, and its own
    epoch limit where it trained what ``cfg`` would: ``_as_now``), each saved after the one before
    it (so none is stale: an earlier phase's settings reach a phase through the checkpoint it
    starts from). A run that continues after them trains only the rest, the first of which resumes
    where it stopped if it had begun, or goes on where it stopped at a lower epoch limit than
    ``cfg``'s. 0 with ``cfg.resume`` off, for arrays without a data fingerprint (nothing to tell the
    data apart by), and when the whole sequence is finished: that run was not interrupted, and a new
    one trains everything."""
    if not cfg.resume or arrays.data_fingerprint is None:
        return 0
    done, after = 0, 0
    for store, phase in sequence:
        last = store.load(phase, "last") if store.exists(phase, "last") else None
        if (last is None or not last.get("finished") or last.get("saved_ns", -1) < after or not _same_data(last, arrays)
                or _as_now(last, cfg, phase) != "same"):  # fmt: skip
            break
        if not _same_code(last):
            log.info("phase %d in %s finished before, by other code (%s; now %s): it is trained again, with the phases after it",
                     phase, store.path(phase, "last").parent, last.get("code", "not recorded"), code_version())  # fmt: skip
            break
        done, after = done + 1, last["saved_ns"]
    return 0 if done == len(sequence) else done


def _recipe(train_settings: dict, phase: int) -> tuple[dict, int | None]:
    """The training settings ``phase`` depends on, and its epoch limit: all but how fast it runs
    (``keep_freed_memory``), with its own patience and not the other phases' epochs and patience
    (an earlier phase's settings reach it only through the checkpoint it starts from)."""
    kept = {k: v for k, v in train_settings.items() if k not in ("keep_freed_memory", "epochs", "patience")}
    per_phase = {name: of_phase(train_settings[name], phase) if train_settings.get(name) is not None else None for name in ("epochs", "patience")}
    return {**kept, "patience": per_phase["patience"]}, per_phase["epochs"]


def _as_now(last: dict, cfg: TrainConfig, phase: int) -> str | None:
    """What a finished phase's last checkpoint is to a run of ``cfg`` that starts it from the
    checkpoint it started from: "same" where that run would train it to these weights (the settings
    it depends on are the same, its epoch limit aside, and it stopped early, or at an epoch limit
    that is ``cfg``'s), "more" where it stopped at a lower epoch limit than ``cfg``'s (the run goes
    on after its last epoch as if it had never stopped: there is no learning-rate schedule, and an
    epoch's dates and draws are a function of the seed and the epoch), else None."""
    limit_then = _limit_trained_under(last, cfg, phase)
    if limit_then is None:
        return None
    ran = last["epoch"] + 1
    stopped_early = last.get("bad_epochs", 0) > patience_of(cfg, phase)
    return "same" if stopped_early or ran == epochs_of(cfg, phase) else "more" if ran == limit_then else None


def _limit_trained_under(last: dict, cfg: TrainConfig, phase: int) -> int | None:
    """The epoch limit a phase's last checkpoint was trained under, where it was trained with the
    settings ``cfg`` gives the phase (its epoch limit aside) and for no more epochs than ``cfg``
    allows, so that a run of ``cfg`` could go on from it; else None."""
    return None if _not_as_trained(last, cfg, phase) else _recipe(last.get("config", {}).get("train") or {}, phase)[1]


def _not_as_trained(last: dict, cfg: TrainConfig, phase: int) -> str:
    """Why, by its settings, a run of ``cfg`` cannot take ``last`` (a checkpoint of ``phase``) as its
    own, in words: the settings the phase depends on that differ ("training.seed 1 then, 2 now"),
    more epochs than ``cfg`` allows, or no record of its epochs; "" where none holds."""
    (then, limit_then), (now, limit) = _recipe(last.get("config", {}).get("train") or {}, phase), _recipe(asdict(cfg), phase)
    then, now = dotted(then), dotted(now)
    changed = [f"training.{k} {_said(then, k)} then, {_said(now, k)} now" for k in sorted(then.keys() | now.keys()) if then.get(k, _UNSET) != now.get(k, _UNSET)]
    if changed:
        return "was trained with other settings: " + "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
    if limit_then is None or "epoch" not in last:
        return "was trained under no recorded epoch limit"
    if last["epoch"] + 1 > limit:
        return f"ran {last['epoch'] + 1} epochs, more than this run's limit of {limit}"
    return ""


_UNSET = object()


def _said(settings: dict, key: str) -> str:
    return repr(settings[key]) if key in settings else "unset"


def _why_not_from(last: dict, cfg: TrainConfig, phase: int, arrays: TrainingArrays, store: CheckpointStore) -> str:
    """Why a run of ``cfg`` cannot go on from ``last``, ``phase``'s checkpoint, in words: the first
    that holds of other data, other code, other settings (``_not_as_trained``) and a start trained
    again since; "" where none does."""
    if not _same_data(last, arrays):
        return f"was of other data ({describe(last.get('data_fingerprint'))}), not of these arrays ({describe(arrays.data_fingerprint)})"
    if not _same_code(last):
        return f"was trained by other code ({last.get('code', 'not recorded')}; now {code_version()})"
    if why := _not_as_trained(last, cfg, phase):
        return why
    if not _follows(store, phase, last):
        return f"was trained from a phase {phase - 1} that has been trained again since"
    return ""


def _same_code(checkpoint: dict) -> bool:
    """Whether a checkpoint was trained by this source code (``code_version``)."""
    return checkpoint.get("code") == code_version()


def _same_data(checkpoint: dict, arrays: TrainingArrays) -> bool:
    """Whether a checkpoint was trained on the data of ``arrays`` (always, for arrays without a fingerprint)."""
    mine, theirs = arrays.data_fingerprint, checkpoint.get("data_fingerprint")
    return mine is None or (theirs is not None and theirs.get("id") == mine.get("id"))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _on(flag: bool) -> str:
    return "on" if flag else "off"


@dataclass
class _Progress:
    """Where a phase stands: the next epoch, the best validation score so far, the epochs since it
    improved, the rows of the epochs run, the checkpoint resumed from (if any), and where the linear
    paths started, this phase's and the phases' before it ("phase 2, neighbour skip" -> horizon ->
    the start validation kept)."""

    start_epoch: int = 0
    best: float = -math.inf
    bad_epochs: int = 0
    history: list = field(default_factory=list)
    resumed: dict | None = None
    starts: dict = field(default_factory=dict)


def _train_phase(phase, arrays, graphs, train_idx, val_idx, cfg, store, manifest, on_epoch_end, progress, followed_by) -> list[dict]:
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {sorted(PHASES)}, got {phase!r}")
    days = arrays.features.shape[0]
    if cfg.window > days:  # every window would be mostly the zeros before the first day, and its steps as slow as its length
        raise TrainingError(f"training.window is {cfg.window} days, longer than the data's {days} trading days: each date's "
                            f"history would be mostly zeros. Run with a window under that, e.g. --params training.window=20 (the default).")  # fmt: skip
    most = int(arrays.present[np.asarray(val_idx)].sum(1).max()) if len(val_idx) else cfg.min_stocks
    if most < cfg.min_stocks:  # no validation date could be scored: no epoch, start or checkpoint could be chosen
        raise TrainingError(f"the validation dates have at most {most} stocks, fewer than training.min_stocks ({cfg.min_stocks}), the "
                            "stocks a date needs to be scored. For a universe this small run with --params "
                            f"training.min_stocks={most},evaluation.min_stocks={most} (a RankIC over so few stocks is noisy).")  # fmt: skip
    ranks = _ranks(cfg, device_of(cfg))
    device = distributed.rank_device(device_of(cfg), ranks)
    torch.manual_seed(cfg.seed)
    model = build_model(arrays, graphs, cfg, phase, device)
    spec = PHASES[phase]
    threads = torch.get_num_threads()  # the mode's, set by _mode_settings
    log.info("phase %d: FAN %s, GAT %s, horizons %s; %s parameters on %s, %s mode%s",
             phase, _on(spec.use_fan), _on(spec.use_gat), list(spec.horizons),
             f"{sum(p.numel() for p in model.parameters()):,}", device, cfg.mode,
             f", {ranks.world} processes" if ranks.parallel else f", {threads} thread{'s' if threads > 1 else ''}" if device.type == "cpu" else "")  # fmt: skip
    resident = resident_dates(arrays, graphs, cfg, device, phase)
    capture = _captures(cfg, device, resident, ranks, phase)
    # fused: one kernel (CPU or CUDA) for all parameters instead of ~50 small ops per tensor
    # (0.6 ms a step on this model vs 4.3 ms on the CPU, measured); it also skips a step on the device (found_inf)
    lr = cfg.lr * spec.lr_scale
    optimizer = torch.optim.AdamW(parameter_groups(model, lr, cfg.skip_lr_scale), lr=lr, weight_decay=cfg.weight_decay, fused=True,
                                  capturable=capture)  # fmt: skip
    horizons = [f"{h}d" for h in spec.horizons]
    stop_weights = {h: w for h, w in cfg.early_stopping_weights.items() if h in horizons} or {horizons[0]: 1.0}
    checkpoint_fields = {"config": {"phase": phase, "train": asdict(cfg), "model": asdict(model.cfg)},
                         "feature_manifest": manifest, "format": FORMAT, "data_fingerprint": arrays.data_fingerprint, "code": code_version()}  # fmt: skip

    val_ds = DateDataset(arrays, graphs, val_idx, cfg.window)
    score_of = lambda val: sum(w * val[h] for h, w in stop_weights.items()) / sum(stop_weights.values())  # noqa: E731
    validation = Validation(val_ds, lambda m: predict(m, val_ds, cfg, device, resident), lambda f: rank_ic_by_date(f, horizons, cfg.min_stocks))
    rank_ics = lambda m: validation.rank_ics(validation.forecast(m))  # noqa: E731
    at = _start_state(phase, model, optimizer, arrays, graphs, train_idx, cfg, store, followed_by, ranks.main, validation)
    checkpoint_fields["starts"] = at.starts
    averaged = weight_average(model, cfg.ema_decay)
    if averaged is not None and at.resumed is not None:  # the average's weights are the checkpoint's "model"
        averaged.module.load_state_dict(at.resumed["model"])
        averaged.updates = int(at.resumed["ema_updates"])
    evaluated = averaged.module if averaged is not None else model  # what validation, checkpoints and predictions use
    trained = distributed.wrap(model, device, ranks, partial=not (spec.use_fan and spec.use_gat and len(spec.horizons) == len(HORIZONS)))
    # optimized mode in one process: steps that read nothing back (recorded in a CUDA graph with ``capture``)
    stepper = DeviceStep(model, optimizer, averaged, cfg, device, capture=capture) if cfg.mode == "optimized" and not ranks.parallel else None
    nodes = int(arrays.present[train_idx].sum(1).max()) if capture else None  # the static shape's nodes per date
    validate = lambda: rank_ics(evaluated)  # noqa: E731
    epochs, patience = epochs_of(cfg, phase), patience_of(cfg, phase)
    if cfg.keep_start and at.start_epoch == 0 and ranks.main:  # the start is the best until an epoch beats it on validation
        start = validate()
        if math.isfinite(score_of(start)):
            at.best = score_of(start)
            store.save(phase, "best", {"model": evaluated.state_dict(), "epoch": -1, "best": at.best, "history": [],
                                       "saved_at": _now(), **checkpoint_fields})  # fmt: skip
            log.info("phase %d: validation at the start %s", phase, {h: round(v, 4) for h, v in start.items()})

    def record(epoch: int, seconds: float, sums: dict, steps: int, bad: int, gat_norms: list) -> bool:
        """Validate the epoch, add its row to the history, checkpoint; -> whether the phase stops."""
        val = validate()
        metric = score_of(val)
        row = {
            "phase": phase, "epoch": epoch, "seconds": seconds, "steps": steps, "skipped": bad,
            **{f"train_{k}": v / max(steps, 1) for k, v in sums.items()},
            **{f"val_rank_ic_{h}": val.get(h, float("nan")) for h in HORIZON_KEYS},
            "val_metric": metric,
            "gat_grad_norm": float(np.mean(gat_norms)) if gat_norms else float("nan"),
            "fusion_gate": float(torch.sigmoid(evaluated.fusion_gate.detach())) if model.use_gat else float("nan"),
            "gat_share": float(evaluated.gat_share.detach()) if model.use_gat and evaluated.gat_share is not None else float("nan"),
        }  # fmt: skip
        at.history.append(row)
        score = metric if math.isfinite(metric) else -math.inf  # no valid validation date: worst
        improved = score > at.best or (len(at.history) == 1 and at.best == -math.inf)  # without a valid start, the first epoch is kept
        at.best, at.bad_epochs = (score, 0) if improved else (at.best, at.bad_epochs + 1)
        stop = at.bad_epochs > patience or epoch == epochs - 1
        state = {
            "model": evaluated.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "best": at.best,
            "bad_epochs": at.bad_epochs, "history": at.history, "rng": torch.get_rng_state(), "finished": stop,
            "saved_at": _now(), "saved_ns": time.time_ns(), **checkpoint_fields,
        }  # fmt: skip
        if averaged is not None:  # with "model" (the average), what an exact resume needs
            state.update(train_weights=model.state_dict(), ema_updates=averaged.updates)
        if improved:  # the same state: serialised once, copied to last
            store.save(phase, "best", state, also=("last",))
        else:
            store.save(phase, "last", state)
        log.info(
            "phase %d epoch %d: loss %.4f, val RankIC %s, %.1f s%s",
            phase, epoch, row["train_loss"], {h: round(v, 4) for h, v in val.items()}, row["seconds"],
            " (best)" if improved else "",
        )  # fmt: skip
        if stop and at.bad_epochs > patience:
            log.info("phase %d: early stop after epoch %d (best %.4f)", phase, epoch, at.best)
        return stop

    for epoch in range(at.start_epoch, epochs):
        t0 = time.perf_counter()
        if ranks.parallel:  # each rank its own dropout draws, a function of the epoch: exact resume
            torch.manual_seed(((cfg.seed * 100_003 + phase) * 1_009 + epoch) * 1_000 + ranks.rank)
        sums, steps, bad, gat_norms = _one_epoch(phase, epoch, model, trained, optimizer, averaged, arrays, graphs, train_idx, cfg,
                                                 device, resident, progress and ranks.main, ranks, stepper, nodes)  # fmt: skip
        sums = distributed.summed(sums, ranks)  # each rank's share of every step's loss
        stop = distributed.from_main(record(epoch, time.perf_counter() - t0, sums, steps, bad, gat_norms) if ranks.main else None, ranks)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
        if stop:
            break
    distributed.barrier(ranks)  # the checkpoints are written before any rank reads them
    return at.history


def _captures(cfg: TrainConfig, device: torch.device, resident, ranks: distributed.Ranks, phase: int) -> bool:
    """Whether this phase's steps are recorded in a CUDA graph (``training.cuda_graph``), saying why not when asked and impossible."""
    if not cfg.cuda_graph or cfg.mode != "optimized":
        return False
    why = ("it runs on " + device.type if device.type != "cuda" else "the arrays are not resident on the GPU" if resident is None
           else "it runs under torchrun" if ranks.parallel else "")  # fmt: skip
    if why:
        log.info("phase %d: training.cuda_graph is on, but %s: steps run eagerly", phase, why)
    return not why


def _ranks(cfg: TrainConfig, device: torch.device) -> distributed.Ranks:
    """This process's ranks under torchrun (joined to the process group), or one process."""
    ranks = distributed.Ranks.from_env()
    if ranks.parallel and cfg.mode != "optimized":
        raise TrainingError(
            f"torchrun started {ranks.world} processes, but training.mode is {cfg.mode!r}, which trains in one "
            "process; set training.mode=optimized (and dates_per_batch to at least the number of processes)"
        )
    if ranks.parallel and dates_per_step(cfg) < ranks.world:
        raise TrainingError(
            f"training.dates_per_batch ({cfg.dates_per_batch}) must be at least the number of processes ({ranks.world}): "
            "each process trains on its share of a step's dates"
        )
    return distributed.join(device)


def parameter_groups(model: torch.nn.Module, lr: float, skip_lr_scale: float) -> list[dict]:
    """The optimizer's groups: everything at the phase's rate ``lr``, and with ``skip_lr_scale`` != 1
    the two linear paths (``linear``, ``neighbour``), which start at ridge fits, at that fraction of it."""
    if skip_lr_scale == 1.0:
        return [{"params": list(model.parameters())}]
    skips = {id(p) for part in (model.linear, model.neighbour) if part is not None for p in part.parameters()}
    rest, linear = [], []
    for p in model.parameters():
        (linear if id(p) in skips else rest).append(p)
    return [{"params": rest}, {"params": linear, "lr": lr * skip_lr_scale}]


def _start_state(phase, model, optimizer, arrays, graphs, train_idx, cfg, store, followed_by, main=True, validation=None) -> _Progress:
    """Load where the phase starts: an interrupted run of the same data (resume), else the previous
    phase's best checkpoint, else a new model at its ridge start. ``main``: the process that says
    what it finds (rank 0 under torchrun); ``validation`` (a ``Validation``): on which the neighbour
    skip's start is chosen, horizon by horizon, when the graph comes on."""
    spec = PHASES[phase]
    before = store.load(phase, "last") if store.exists(phase, "last") else None
    more = before is not None and cfg.resume and before["finished"] and _as_now(before, cfg, phase) == "more"
    resumable = before is not None and cfg.resume and (not before["finished"] or more)
    say = log.warning if main else log.debug
    why = _why_not_from(before, cfg, phase, arrays, store) if before is not None and cfg.resume else ""
    if resumable and why:
        earlier = "the run that stopped at fewer epochs" if more else "the interrupted run"
        say("phase %d: %s in %s %s: it starts over", phase, earlier, store.path(phase, "last"), why)
        resumable, why = False, ""  # said
    elif before is not None and not resumable:  # a finished phase trained again, or resuming off
        why = "training.resume is off" if not cfg.resume else f"it {why}" if why else (
            "it finished with these data, code and settings: only an interrupted run is continued, a finished one runs again")
    if before is not None and not resumable and main:
        _warn_retraining(phase, store, followed_by, why)
    if resumable:
        load_weights(model, before.get("train_weights") or before["model"], f"the checkpoint {store.path(phase, 'last')}", f"phase={phase}")
        optimizer.load_state_dict(before["optimizer"])
        torch.set_rng_state(before["rng"])
        if more:
            log.info("phase %d: it stopped at its epoch limit (%d) before; going on after epoch %d from %s, up to the limit of %d",
                     phase, before["epoch"] + 1, before["epoch"], store.path(phase, "last"), epochs_of(cfg, phase))  # fmt: skip
            if main:
                _warn_stale(phase, store, followed_by, f"Phase {phase} goes on from where it stopped")
        else:
            log.info("phase %d: resuming after epoch %d from %s", phase, before["epoch"], store.path(phase, "last"))
        return _Progress(before["epoch"] + 1, before["best"], before["bad_epochs"], before["history"], resumed=before,
                         starts=before.get("starts", {}))  # fmt: skip
    if phase > 0:
        if not store.exists(phase - 1, "best"):
            raise TrainingError(
                f"phase {phase} starts from phase {phase - 1}'s best checkpoint, and there is none at "
                f"{store.path(phase - 1, 'best')}: run phase={phase - 1} first "
                f"(kedro run --pipelines training --params phase={phase - 1}) or phase=all"
            )
        previous = store.load(phase - 1, "best")
        if arrays.data_fingerprint is not None:
            check_built_from(arrays.data_fingerprint, checkpoint=previous.get("data_fingerprint"))
        load_weights(model, previous["model"], f"the checkpoint {store.path(phase - 1, 'best')}", f"phase={phase - 1}")
        log.info("phase %d: starting from phase %d's best checkpoint: %s", phase, phase - 1, kept_checkpoint(previous["epoch"], previous["best"]))
        starts = dict(previous.get("starts", {}))
        coming = [h for h in spec.horizons if h not in PHASES[phase - 1].horizons]
        if coming and cfg.horizon_starts in ("validated", "ranked") and cfg.linear_start == "ridge" and model.linear is not None and validation is not None:
            choice = choose_skip_starts(model, arrays, train_idx, cfg.linear_ridge_alpha, coming, validation, cfg.horizon_starts)
            starts[f"phase {phase}, linear skip"] = choice.kept
        if coming and cfg.horizon_starts == "one_day" and model.linear is not None and 1 in model.skip_horizons:
            rows = [h for h in coming if h in model.skip_horizons]
            start_at_one_day(model, rows)
            starts[f"phase {phase}, linear skip"] = {f"{h}d": "the 1-day row" for h in rows}
        if coming and cfg.horizon_starts == "covariance" and cfg.linear_start == "ridge" and model.linear is not None:
            rows = [h for h in coming if h in model.skip_horizons]
            start_at_covariance(model, arrays, train_idx, rows)
            starts[f"phase {phase}, linear skip"] = {f"{h}d": "the covariance fit" for h in rows}
        if coming and cfg.horizon_starts == "momentum" and model.linear is not None:
            rows = [h for h in coming if h in model.skip_horizons]
            start_at_feature(model, arrays, train_idx, rows, cfg.momentum_feature)
            starts[f"phase {phase}, linear skip"] = {f"{h}d": f"{cfg.momentum_feature}, scaled" for h in rows}
        graph_on = spec.use_gat and not PHASES[phase - 1].use_gat
        if graph_on and cfg.linear_start == "ridge" and model.neighbour is not None:
            choice = start_neighbours_at_ridge(model, arrays, graphs, train_idx, cfg.window, cfg.linear_ridge_alpha, validation, cfg.neighbour_start_margin)
            if choice is not None:
                starts[f"phase {phase}, neighbour skip"] = choice.kept
        return _Progress(starts=starts)
    # a new model
    if cfg.scale_targets:  # its outputs in units of the training split's typical return
        model.target_scale.copy_(torch.as_tensor(typical_returns(arrays, train_idx), dtype=torch.float32))
    starts = {}
    if cfg.linear_start == "ridge" and model.linear is not None:
        choice = start_at_ridge(model, arrays, train_idx, cfg.linear_ridge_alpha, cfg.skip_clips, validation, cfg.skip_targets, cfg.long_ridge_alpha)
        if choice is not None:
            starts[f"phase {phase}, linear skip"] = choice.kept
    return _Progress(starts=starts)


def _one_epoch(phase, epoch, model, trained, optimizer, averaged, arrays, graphs, train_idx, cfg, device, resident, progress, ranks,
               stepper=None, nodes=None):  # fmt: skip
    """One pass over the training dates (or ``max_train_dates`` of them, drawn by the epoch's seed);
    -> summed loss parts (this rank's shares), steps taken, batches skipped as non-finite, GAT gradient
    norms. ``trained``: the model as it is called (DDP-wrapped under torchrun). ``stepper``: optimized
    mode's ``DeviceStep`` (else each step reads its finite check); ``nodes``: the batches' padded size."""
    model.train()
    order_seed = cfg.seed * 100_003 + phase * 1_009 + epoch
    dates = train_idx
    if cfg.max_train_dates and len(train_idx) > cfg.max_train_dates:
        dates = train_idx[np.sort(np.random.default_rng(order_seed).choice(len(train_idx), cfg.max_train_dates, replace=False))]
    subset = DateDataset(arrays, graphs, dates, cfg.window)
    loader = train_batches(subset, cfg, order_seed, resident, ranks, nodes)
    bar = tqdm(loader, desc=f"phase {phase} epoch {epoch}", unit="batch", total=math.ceil(len(subset) / dates_per_step(cfg)),
               disable=not progress, leave=False)  # fmt: skip
    if stepper is None:
        sums, steps, bad, gat_norms = _eager_steps(phase, epoch, model, trained, optimizer, averaged, cfg, device, ranks, bar, progress)
    else:
        for n, batch in enumerate(bar, 1):
            stepper(batch.to(device))
            if progress and n % 10 == 0:  # the bar's loss: a read every 10 steps
                bar.set_postfix(loss=f"{float(stepper.sums[0]) / n:.4f}")
        done = stepper.finish()
        sums, steps, bad, gat_norms = done.sums, done.steps, len(done.skipped), done.gat_norms
        for step_dates in done.skipped:
            log.warning("phase %d epoch %d: non-finite input or loss on %s, step skipped", phase, epoch, [str(d) for d in step_dates])
    total = steps + bad
    if total and bad / total > cfg.max_bad_batch_fraction:
        raise TrainingError(
            f"phase {phase} epoch {epoch}: {bad} of {total} batches had non-finite inputs or loss "
            f"(limit {cfg.max_bad_batch_fraction:.0%}); check model_input and market_context for NaN/inf"
        )
    return sums, steps, bad, gat_norms


def _eager_steps(phase, epoch, model, trained, optimizer, averaged, cfg, device, ranks, bar, progress):
    """Safe mode's steps (and torchrun's): each reads whether its batch and loss are finite (on any
    rank), to skip it or not; -> summed loss parts, steps taken, steps skipped, GAT gradient norms."""
    shards = distributed.StepShards(ranks, dates_per_step(cfg)) if ranks.parallel else None
    weights = LossWeights(**cfg.loss_weights)
    # on the device, read once at the end of the epoch: loss, pinball, rank_ic, ic, sharpe (float64,
    # summed in step order as Python floats would be), and the GAT's gradient norm of every step
    sums = torch.zeros(len(PARTS), dtype=torch.float64, device=device)
    steps = bad = 0
    gat_norms = []
    for batch in bar:
        b = batch.to(device)
        inputs_ok = finite_batch(b)
        loss, parts = forward_loss(trained, b, cfg, weights, device, shards=shards)
        ok = inputs_ok & torch.isfinite(loss)
        if not distributed.everywhere(ok, ranks):  # the step's one read; on any rank: every rank skips the step
            bad += 1
            if not bool(ok):  # the rank with the dates says what it found
                what = "input" if not bool(inputs_ok) else "loss"
                log.warning("phase %d epoch %d: non-finite %s on %s, step skipped", phase, epoch, what, [str(d) for d in batch.dates])
            continue
        optimizer.zero_grad(set_to_none=True)
        (loss * ranks.world if ranks.parallel else loss).backward()  # DDP averages: a rank's share counts world times
        if model.use_gat:
            gat_norms.append(gat_grad_norm(model, device))
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if averaged is not None:
            averaged.update(model)
        steps += 1
        sums += torch.stack([loss.detach(), *parts.values()]).double()
        if progress and steps % 10 == 0:  # the bar's loss: a read every 10 steps
            bar.set_postfix(loss=f"{float(sums[0]) * ranks.world / steps:.4f}")  # a rank's share, scaled
    return dict(zip(PARTS, sums.tolist())), steps, bad, [float(v) for v in torch.stack(gat_norms).tolist()] if gat_norms else []
