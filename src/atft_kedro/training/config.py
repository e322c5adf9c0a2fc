"""Training configuration: the phases (SPEC section 6) and ``TrainConfig``, the ``training``
parameters of conf/base/parameters_training.yml as a typed object."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from atft_kedro.checks import number_in, whole_number
from atft_kedro.features.targets import HORIZONS
from atft_kedro.training.losses import LossWeights


@dataclass(frozen=True)
class Phase:
    """What a training phase switches on (SPEC section 6); each starts from the previous one's best."""

    use_fan: bool
    use_gat: bool
    horizons: tuple[int, ...]
    lr_scale: float = 1.0


PHASES = {
    0: Phase(use_fan=False, use_gat=False, horizons=(1,)),  # the temporal encoder, 1 day
    1: Phase(use_fan=True, use_gat=False, horizons=HORIZONS),  # + FAN/SAN, every horizon
    2: Phase(use_fan=True, use_gat=True, horizons=HORIZONS),  # + the graph
    3: Phase(use_fan=True, use_gat=True, horizons=HORIZONS, lr_scale=0.1),  # fine-tuning
}

# the horizons whose training targets are the returns less each date's sector means and beta part, per ``targets``
NEUTRAL_HORIZONS = {"raw": (), "neutral": HORIZONS, "neutral_long": tuple(h for h in HORIZONS if h > 1)}


def parse_phases(phase) -> list[int]:
    """``phase`` as given (0..3, "2", or "all") -> the phases to train, in order."""
    if str(phase) == "all":
        return sorted(PHASES)
    try:
        value = int(phase)
    except (TypeError, ValueError):
        value = None
    if value not in PHASES:
        raise ValueError(f"phase must be one of {sorted(PHASES)} or 'all', got {phase!r}")
    return [value]


@dataclass(frozen=True)
class TrainConfig:
    mode: str = "safe"  # safe: one process, one date a step, deterministic | optimized: multi-date batches, all threads, workers
    threads: int = 1  # safe mode's torch threads (0: the process's count, all cores unless OMP_NUM_THREADS says less): reruns repeat the bits at any one count
    keep_freed_memory: bool = True  # glibc keeps the large tensors torch frees for the next step instead of unmapping them (atft_kedro.allocator): the same bits, fewer page faults, more resident memory
    epochs: int | dict = 6  # per phase at most: one number for all, or {phase: epochs} for every phase
    patience: int | dict = 2  # epochs in a row without a better validation score before a phase stops: one number, or {phase: patience}
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    window: int = 20
    dates_per_batch: int = 1  # optimized mode stacks several dates per step
    num_workers: int = 0  # optimized mode: DataLoader workers reading memory-mapped arrays
    resident_data: bool = True  # optimized mode on CUDA: arrays on the GPU (if under half its free memory), batches gathered there
    cuda_graph: bool = False  # optimized mode on CUDA with resident arrays: the step recorded once in a CUDA graph and replayed (batches padded to static shapes)
    seed: int = 0
    min_stocks: int = 20
    rank_tau: float = 0.1
    max_train_dates: int | None = None  # subsample of training dates per epoch (None: all)
    max_bad_batch_fraction: float = 0.1  # more non-finite batches than this stops the run
    ema_decay: float | None = 0.998  # moving average of the weights for validation, checkpoints, predictions (None: off)
    early_stopping_weights: dict = field(default_factory=lambda: {"1d": 1.0})
    horizon_weights: dict = field(default_factory=dict)  # loss weight per horizon ("5d": 0.5); 1 where not given
    loss_weights: dict = field(default_factory=lambda: asdict(LossWeights()))
    model: dict = field(default_factory=dict)  # ModelConfig fields other than the data sizes
    device: str = "auto"
    resume: bool = True  # an interrupted run keeps the phases it finished (same data, code and settings) and resumes the one it stopped in
    targets: str = "raw"  # raw | neutral | neutral_long: train and validate on returns less each date's sector means and beta part (neutral_long: the 5-20 day targets only, the 1-day raw)
    scale_targets: bool = True  # phase 0 sets the model's target_scale from the training returns (else 1)
    linear_start: str = "zero"  # zero | ridge: the linear skip (phase 0) and the neighbour skip (phase 2, on what the model leaves) start at ridge fits on the training split
    linear_ridge_alpha: float = 1000.0  # that ridge's penalty (features are robust z-scores)
    long_ridge_alpha: float | None = None  # the penalty of the linear skip's 5-20 day rows' start (phase 0 fits them, phase 1 trains them; a horizon_starts other than ridge starts them again at phase 1); null: linear_ridge_alpha
    skip_clips: tuple[float, ...] = ()  # the linear skip's rows of phase 0's horizons (1 day) read the features winsorised at the one of these their validation prefers, or as they are; empty: never clipped (conf/base: [0.5, 1, 2, 3])
    skip_targets: tuple[str, ...] = ("raw",)  # with skip_clips: the 1-day row's candidate fits are also made on each date's targets as ranks (rank: normal scores), and validation picks among all
    horizon_starts: str = "ridge"  # ridge | validated | ranked | one_day | covariance | momentum: the linear skip's rows of the horizons a phase turns on keep their ridge start, are chosen on validation among other penalties and signals or against the ridge fitted on ranked targets (training.starts.choose_skip_starts), start at the 1-day row (start_at_one_day), at the ridge's infinite-penalty limit (start_at_covariance) or at momentum_feature scaled (start_at_feature)
    momentum_feature: str = "ret_60d"  # with horizon_starts: momentum, the feature the long rows start at
    neighbour_start_margin: float = 0.0  # the neighbour skip's best fit replaces no skip (phase 2's start) only where it beats it on validation by more than this many standard errors (0: by any amount)
    keep_start: bool = True  # a phase's starting weights count as its epoch -1: its best is never below its start on validation
    skip_lr_scale: float = 1.0  # the two linear paths (linear and neighbour skip) learn at this fraction of the learning rate: at 1 a phase's first epoch moves their ridge starts far off (1: one rate for all)

    def __post_init__(self):
        if self.mode not in ("safe", "optimized"):
            raise ValueError(f"training mode must be 'safe' or 'optimized', got {self.mode!r}")
        self._check_numbers()
        if not whole_number(self.threads, 0):
            raise ValueError(f"training threads is safe mode's torch thread count, a whole number >= 0 (0: all), got {self.threads!r}")
        if self.targets not in NEUTRAL_HORIZONS:
            raise ValueError(f"training targets must be 'raw', 'neutral' or 'neutral_long', got {self.targets!r}")
        if self.horizon_starts not in ("ridge", "validated", "ranked", "one_day", "covariance", "momentum"):
            raise ValueError(f"horizon_starts must be 'ridge', 'validated', 'ranked', 'one_day', 'covariance' or 'momentum', got {self.horizon_starts!r}")
        if not isinstance(self.momentum_feature, str) or not self.momentum_feature:
            raise ValueError(f"momentum_feature is the name of a feature, got {self.momentum_feature!r}")
        if not number_in(self.neighbour_start_margin, 0):
            raise ValueError(f"neighbour_start_margin must be a number of standard errors >= 0, got {self.neighbour_start_margin!r}")
        if not all(number_in(c, 0, above_low=True) for c in self.skip_clips or ()):
            raise ValueError(f"skip_clips are robust z-scores to winsorise the linear skip's inputs at, each > 0, got {list(self.skip_clips)!r}")
        object.__setattr__(self, "skip_clips", tuple(float(c) for c in self.skip_clips or ()))
        object.__setattr__(self, "skip_targets", tuple(self.skip_targets or ("raw",)))
        if not set(self.skip_targets) <= {"raw", "rank"} or "raw" not in self.skip_targets:
            raise ValueError(f"skip_targets are the targets the linear skip's candidate starts are fitted on, 'raw' and optionally 'rank', got {list(self.skip_targets)!r}")
        if self.linear_start not in ("zero", "ridge"):
            raise ValueError(f"linear_start must be 'zero' or 'ridge', got {self.linear_start!r}")
        if not number_in(self.skip_lr_scale, 0):
            raise ValueError(f"skip_lr_scale is a fraction of the learning rate, >= 0, got {self.skip_lr_scale!r}")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise ValueError(f"training device is 'auto' or a torch device ('cpu', 'cuda', 'cuda:1'), got {self.device!r}") from None

    @property
    def neutral_horizons(self) -> tuple[int, ...]:
        """The horizons trained on returns less each date's sector means and beta part (``targets``)."""
        return NEUTRAL_HORIZONS[self.targets]

    def _check_numbers(self) -> None:
        """The numbers (and the phases and horizons they are given for) a run would otherwise meet
        late (an error once a phase starts, after the data and graphs are built) or not at all (a
        negative learning rate climbs the loss)."""
        reals = {"lr": ("the learning rate, >= 0 (0: the phase keeps its start)", dict(low=0)),
                 "weight_decay": ("AdamW's weight decay, >= 0", dict(low=0)),
                 "grad_clip": ("the gradient norm steps are clipped at, > 0", dict(low=0, above_low=True)),
                 "rank_tau": ("the soft rank's temperature, > 0", dict(low=0, above_low=True)),
                 "linear_ridge_alpha": ("the linear paths' ridge penalty, > 0", dict(low=0, above_low=True)),
                 "max_bad_batch_fraction": ("a fraction of an epoch's batches, in [0, 1]", dict(low=0, high=1))}  # fmt: skip
        for name, (what, bounds) in reals.items():
            if not number_in(getattr(self, name), **bounds):
                raise ValueError(f"training {name} is {what}, got {getattr(self, name)!r}")
        if self.long_ridge_alpha is not None and not number_in(self.long_ridge_alpha, 0, above_low=True):
            raise ValueError(f"training long_ridge_alpha is the 5-20 day rows' ridge penalty, > 0 (null: linear_ridge_alpha), got {self.long_ridge_alpha!r}")
        if self.ema_decay is not None and not number_in(self.ema_decay, 0, 1, below_high=True):
            raise ValueError(f"training ema_decay is the weight average's decay, in [0, 1) (null: off), got {self.ema_decay!r}")
        wholes = {"window": ("days of history a forecast reads", 1), "dates_per_batch": ("dates a step of optimized mode stacks", 1),
                  "num_workers": ("optimized mode's DataLoader workers", 0), "seed": ("the seed of the weights and the date order", 0),
                  "min_stocks": ("the stocks a date needs to be scored", 2)}  # fmt: skip
        for name, (what, least) in wholes.items():
            if not whole_number(getattr(self, name), least):
                raise ValueError(f"training {name} is {what}, a whole number >= {least}, got {getattr(self, name)!r}")
        if self.max_train_dates is not None and not whole_number(self.max_train_dates, 1):
            raise ValueError(f"training max_train_dates is the training dates an epoch draws, a whole number >= 1 (null: all), got {self.max_train_dates!r}")
        for name, least in (("epochs", 1), ("patience", 0)):  # a phase trains at least one epoch (its checkpoints are an epoch's)
            value = getattr(self, name)
            if isinstance(value, dict) and sorted(str(p) for p in value) != sorted(str(p) for p in PHASES):
                raise ValueError(f"training {name} must be a number or {{phase: {name}}} for phases {sorted(PHASES)}, got {value!r}")
            if not all(whole_number(v, least) for v in (value.values() if isinstance(value, dict) else [value])):
                raise ValueError(f"training {name} are whole numbers >= {least}, one for every phase or {{phase: {name}}}, got {value!r}")
        for name in ("horizon_weights", "early_stopping_weights"):
            weights = getattr(self, name)
            unknown = sorted(set(weights) - {f"{h}d" for h in HORIZONS})  # an unknown horizon would be left out without a word
            if unknown:
                raise ValueError(f"training {name} are weights by horizon, {[f'{h}d' for h in HORIZONS]}; {unknown} is none of them")
            if not all(number_in(w, 0) for w in weights.values()) or (name == "early_stopping_weights" and not sum(weights.values()) > 0):
                raise ValueError(f"training {name} are weights >= 0{' (not all 0)' if name == 'early_stopping_weights' else ''}, got {weights!r}")


def epochs_of(cfg: TrainConfig, phase: int) -> int:
    """The most epochs ``phase`` trains for."""
    return of_phase(cfg.epochs, phase)


def patience_of(cfg: TrainConfig, phase: int) -> int:
    """How many epochs in a row ``phase`` may end below its best before it stops."""
    return of_phase(cfg.patience, phase)


def of_phase(value: int | dict, phase: int) -> int:
    """A per-phase setting: one number for every phase, or {phase: number}."""
    if isinstance(value, dict):
        return int({int(p): v for p, v in value.items()}[phase])
    return int(value)
