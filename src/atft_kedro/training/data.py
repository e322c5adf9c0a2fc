"""Whole cross-sections as batches: the dense arrays training reads, and one date's batch.

``TrainingArrays`` holds every (date, stock) of the model input in date-major dense arrays, so the
feature windows of all stocks of date t are one slice ``features[t-T+1 : t+1, members]``. The arrays
can be written as .npy files and memory-mapped: DataLoader workers then read them without copying.
Nodes of date t are that date's stocks in Code order, the order of the date's graph.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from atft_kedro.features.normalise import market_context_of_fold
from atft_kedro.features.panel import date_stock_cells
from atft_kedro.features.splits import split_dates
from atft_kedro.features.targets import HORIZONS, target_columns
from atft_kedro.graph.store import GraphSet

TARGETS = tuple(target_columns())
HORIZON_KEYS = tuple(f"{h}d" for h in HORIZONS)


@dataclass(frozen=True)
class TrainingArrays:
    dates: np.ndarray  # [D] datetime64[D]
    codes: np.ndarray  # [S] str
    features: np.ndarray  # [D, S, F] float32 (0 where the stock is absent)
    targets: np.ndarray  # [D, S, 4] float32 (NaN where unknown)
    present: np.ndarray  # [D, S] bool: the stock traded that day (the date's cross-section)
    market: np.ndarray  # [D, M] float32
    feature_names: tuple[str, ...]
    root: str | None = None  # the folder when the arrays are memory maps of it
    data_fingerprint: dict | None = None  # the data the arrays were built from (atft_kedro.provenance)

    def __reduce__(self):
        # pickled into DataLoader workers: reopen the memory maps there instead of copying arrays
        return (TrainingArrays.open, (self.root,)) if self.root is not None else super().__reduce__()

    def save(self, root: str | Path) -> None:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        for name in ("dates", "codes", "features", "targets", "present", "market"):
            np.save(root / f"{name}.npy", np.asarray(getattr(self, name)), allow_pickle=False)
        (root / "feature_names.txt").write_text("\n".join(self.feature_names))
        (root / "data_fingerprint.json").write_text(json.dumps(self.data_fingerprint, indent=1))

    @classmethod
    def open(cls, root: str | Path) -> "TrainingArrays":
        path = Path(root)
        mm = {n: np.load(path / f"{n}.npy", mmap_mode="r") for n in ("features", "targets", "present", "market")}
        fingerprint = path / "data_fingerprint.json"
        return cls(
            dates=np.load(path / "dates.npy"), codes=np.load(path / "codes.npy"),
            feature_names=tuple((path / "feature_names.txt").read_text().splitlines()), root=str(root), **mm,
            data_fingerprint=json.loads(fingerprint.read_text()) if fingerprint.exists() else None,
        )  # fmt: skip


def with_market_context(arrays: TrainingArrays, market_context: pl.DataFrame) -> TrainingArrays:
    """The same arrays with their market block taken from ``market_context`` (Date + the columns
    of the arrays' market block, in order): a walk-forward fold's own scaling."""
    return dataclasses.replace(arrays, market=_market_block(pl.Series(arrays.dates).cast(pl.Date), market_context), root=None)


def _market_block(dates: pl.Series, market_context: pl.DataFrame) -> np.ndarray:
    """[D, M] float32: the market context's columns on ``dates`` (0 where a date has none)."""
    columns = [c for c in market_context.columns if c != "Date"]
    market = pl.DataFrame({"Date": dates}).join(market_context, on="Date", how="left", maintain_order="left")
    return market.select(columns).fill_null(0.0).to_numpy().astype(np.float32)


def fold_arrays(arrays: TrainingArrays, splits: pl.DataFrame, fold: int, market_features: pl.DataFrame | None,
                normalisation: dict | None) -> TrainingArrays:  # fmt: skip
    """Fold 0: the arrays as built (their market context is fitted on fold 0). A later fold: the
    same arrays with the market context refitted on that fold's training dates."""
    if fold == 0:
        return arrays
    if market_features is None or normalisation is None:
        raise ValueError("a walk-forward fold > 0 refits the market context: pass market_features and normalisation")
    return with_market_context(arrays, market_context_of_fold(market_features, splits, fold, normalisation["clip"]))


def split_indices(arrays: TrainingArrays, splits: pl.DataFrame, name: str, fold: int = 0) -> np.ndarray:
    """Indices into ``arrays.dates`` of one split (train, val or test) of one fold."""
    dates = split_dates(splits, name, fold).to_numpy().astype("datetime64[D]")
    return np.flatnonzero(np.isin(arrays.dates, dates))


def typical_returns(arrays: TrainingArrays, date_indices) -> np.ndarray:
    """[4] per horizon: the standard deviation of the targets of ``date_indices`` less each date's
    mean (the size of a return's cross-sectional part), the model's ``target_scale``."""
    y = np.asarray(arrays.targets[np.asarray(date_indices)], dtype=np.float64)  # (D, S, 4)
    centred = y - np.nanmean(y, axis=1, keepdims=True)
    scale = np.sqrt(np.nanmean(centred**2, axis=(0, 1)))
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def build_arrays(model_input: pl.DataFrame, market_context: pl.DataFrame, feature_names: list[str]) -> TrainingArrays:
    dates, codes, d, s = date_stock_cells(model_input)
    mi = model_input
    features = np.zeros((len(dates), len(codes), len(feature_names)), dtype=np.float32)
    features[d, s] = mi.select(feature_names).to_numpy().astype(np.float32)
    targets = np.full((len(dates), len(codes), len(TARGETS)), np.nan, dtype=np.float32)
    targets[d, s] = mi.select(TARGETS).fill_null(np.nan).to_numpy().astype(np.float32)
    present = np.zeros((len(dates), len(codes)), dtype=bool)  # a date's cross-section: the stocks that traded that day
    present[d, s] = mi["traded"].to_numpy() if "traded" in mi.columns else True
    return TrainingArrays(
        dates=dates.to_numpy().astype("datetime64[D]"), codes=codes.to_numpy().astype(str),
        features=features, targets=targets, present=present,
        market=_market_block(dates, market_context), feature_names=tuple(feature_names),
    )  # fmt: skip


@dataclass
class Batch:
    x: torch.Tensor  # [N, T, F]
    market: torch.Tensor  # [D, T, M]
    date_of_node: torch.Tensor  # [N] int64 in 0..D-1
    neighbors: torch.Tensor  # [N, K] int64 (int32 from ResidentDates), block-diagonal over the batch's dates
    edge_attr: torch.Tensor  # [N, K, E]
    targets: dict[str, torch.Tensor]  # "1d" -> [N]
    dates: list  # [D] numpy datetime64 (NaT for a padding date)
    codes: list  # [D] arrays of the dates' stock codes
    counts: list[int]  # [D] nodes of each date, padding included (the losses lay the dates out from them)

    def apply(self, fn) -> "Batch":
        """The same batch with ``fn`` applied to each of its tensors."""
        return Batch(fn(self.x), fn(self.market), fn(self.date_of_node), fn(self.neighbors), fn(self.edge_attr),
                     {k: fn(v) for k, v in self.targets.items()}, self.dates, self.codes, list(self.counts))  # fmt: skip

    def to(self, device) -> "Batch":
        return self.apply(lambda t: t.to(device, non_blocking=True))


class DateDataset(torch.utils.data.Dataset):
    """Item i = the whole cross-section of date ``date_indices[i]`` with its graph."""

    def __init__(self, arrays: TrainingArrays, graphs: GraphSet, date_indices, window: int):
        self.arrays, self.graphs, self.window = arrays, graphs, window
        self.date_indices = np.asarray(date_indices)

    def __len__(self) -> int:
        return len(self.date_indices)

    def __getitem__(self, i: int) -> dict:
        a, t = self.arrays, int(self.date_indices[i])
        members = np.flatnonzero(a.present[t])
        lo = max(t - self.window + 1, 0)
        x = np.zeros((len(members), self.window, a.features.shape[2]), dtype=np.float32)
        x[:, self.window - (t + 1 - lo) :] = np.asarray(a.features[lo : t + 1, members]).transpose(1, 0, 2)  # (N, T, F)
        market = np.zeros((self.window, a.market.shape[1]), dtype=np.float32)
        market[self.window - (t + 1 - lo) :] = a.market[lo : t + 1]  # (T, M)
        graph, codes = _graph_of(self.graphs, a, t, members)
        return {
            "x": torch.from_numpy(x), "market": torch.from_numpy(market),
            "neighbors": graph.neighbors, "edge_attr": graph.edge_attr,
            "targets": torch.from_numpy(np.asarray(a.targets[t, members])), "date": a.dates[t], "codes": codes,
        }  # fmt: skip


def _graph_of(graphs: GraphSet, arrays: TrainingArrays, t: int, members: np.ndarray):
    """Date t's graph and stock codes; the graph's nodes must be the model input's stocks."""
    graph, codes = graphs.graph(arrays.dates[t]), arrays.codes[members]
    _check_graph_codes(graph.codes, codes, arrays.dates[t])
    return graph, codes


def _check_graph_codes(graph_codes: np.ndarray, codes: np.ndarray, date) -> None:
    if len(graph_codes) != len(codes) or not np.array_equal(graph_codes, codes):
        raise ValueError(
            f"the graph of {date} has {len(graph_codes)} stocks but the model input has {len(codes)}: "
            "rebuild the graphs (kedro run --pipelines graph_construction) after data_engineering"
        )


class ResidentDates:
    """The training arrays copied to one device once, so a batch of dates is gathered there.

    For optimized mode on a GPU. Through a DataLoader every date's [N, T, F] window crosses host
    memory (about 28 MB a date on the full synthetic market) and the GPU waits for it. Here the
    features, targets and market context, and the graphs' neighbour lists and edge attributes, are
    uploaded once, and ``batch`` builds on the device exactly what ``collate_dates`` builds from
    ``DateDataset`` items (tests compare the two), but for the neighbour lists' dtype: int32 here.
    """

    def __init__(self, arrays: TrainingArrays, graphs: GraphSet, window: int, device: torch.device):
        self.arrays, self.graphs, self.window, self.device = arrays, graphs, window, device
        self._members: dict[int, tuple[np.ndarray, torch.Tensor]] = {}  # date -> its stocks, on the host and the device
        with warnings.catch_warnings():  # read-only memory maps: copied to the device, never written
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            upload = lambda a, dtype=None: torch.from_numpy(np.ascontiguousarray(a, dtype=dtype)).to(device)  # noqa: E731
            self.features, self.targets, self.market = upload(arrays.features), upload(arrays.targets), upload(arrays.market)
            # int32 neighbours (as stored; the fused op reads int32 indices: half the bytes of int64), float32 attributes
            self.neighbors, self.edge_attr = upload(graphs.neighbors, np.int32), upload(graphs.edge_attr, np.float32)
        self._rows: dict[int, tuple[int, int]] = {}

    @staticmethod
    def nbytes(arrays: TrainingArrays, graphs: GraphSet) -> int:
        slots = int(np.prod(graphs.neighbors.shape))
        return arrays.features.nbytes + arrays.targets.nbytes + arrays.market.nbytes + slots * 4 + slots * graphs.edge_attr.shape[-1] * 4

    def _graph_rows(self, t: int, members: np.ndarray) -> tuple[int, int]:
        """Date t's rows of the resident graph arrays (its stocks checked against the model input's once)."""
        if t not in self._rows:
            lo, hi = self.graphs.rows_of(self.arrays.dates[t])
            _check_graph_codes(np.asarray(self.graphs.codes[lo:hi]), self.arrays.codes[members], self.arrays.dates[t])
            self._rows[t] = (lo, hi)
        return self._rows[t]

    def _date(self, t: int) -> dict:
        if t not in self._members:  # uploaded once a date, not every step
            members_np = np.flatnonzero(self.arrays.present[t])
            self._members[t] = members_np, torch.from_numpy(members_np).to(self.device)
        members_np, members = self._members[t]
        lo = max(t - self.window + 1, 0)
        x = self.features[lo : t + 1].index_select(1, members).transpose(0, 1)  # (N, L, F)
        market = self.market[lo : t + 1]  # (L, M)
        if t + 1 - lo < self.window:  # the first dates: zeros before the first day, as DateDataset
            missing = self.window - (t + 1 - lo)
            x = torch.cat([x.new_zeros(len(members_np), missing, x.shape[2]), x], dim=1)
            market = torch.cat([market.new_zeros(missing, market.shape[1]), market])
        lo, hi = self._graph_rows(t, members_np)
        return {
            "x": x, "market": market, "neighbors": self.neighbors[lo:hi], "edge_attr": self.edge_attr[lo:hi],
            "targets": self.targets[t].index_select(0, members), "date": self.arrays.dates[t], "codes": self.arrays.codes[members_np],
        }  # fmt: skip

    def batch(self, date_indices, shape: tuple[int, int] | None = None) -> Batch:
        """The batch of ``date_indices``; with ``shape = (dates, nodes)``, one of static shape: each
        date padded to ``nodes`` nodes and the batch to ``dates`` dates (``padded``)."""
        items = [self._date(int(t)) for t in date_indices]
        if shape is not None:
            items = padded(items, *shape)
        return collate_dates(items).to(self.device)


def padded(items: list[dict], dates: int, nodes: int) -> list[dict]:
    """Date items (``DateDataset``'s) made ``dates`` items of ``nodes`` nodes each: a padding node
    has zero features, no neighbours, zero edge attributes and no target (NaN), and a padding date
    only padding nodes (date NaT, no codes). Nothing of a padding node reaches a real node's output,
    and no loss counts it: a batch of static shape, whatever its dates, for a captured step."""
    if len(items) > dates or any(len(it["codes"]) > nodes for it in items):
        raise ValueError(f"cannot pad {len(items)} dates of up to {max(len(it['codes']) for it in items)} stocks to {dates} x {nodes}")
    first = items[0]
    empty = {"x": first["x"][:0], "market": torch.zeros_like(first["market"]), "neighbors": first["neighbors"][:0],
             "edge_attr": first["edge_attr"][:0], "targets": first["targets"][:0], "date": np.datetime64("NaT"), "codes": first["codes"][:0]}  # fmt: skip

    def grow(it: dict) -> dict:
        extra = nodes - len(it["x"])
        more = lambda t, fill: torch.cat([t, t.new_full((extra, *t.shape[1:]), fill)])  # noqa: E731
        return {**it, "x": more(it["x"], 0.0), "neighbors": more(it["neighbors"], -1), "edge_attr": more(it["edge_attr"], 0.0),
                "targets": more(it["targets"], float("nan"))}  # fmt: skip

    return [grow(it) for it in items] + [grow(empty) for _ in range(dates - len(items))]


def collate_dates(items: list[dict]) -> Batch:
    """Stack several dates into one block-diagonal batch graph."""
    counts = [len(it["x"]) for it in items]
    offsets = np.cumsum([0] + counts)
    neighbors = torch.cat([torch.where(it["neighbors"] >= 0, it["neighbors"] + int(off), -1) for it, off in zip(items, offsets)])
    targets = torch.cat([it["targets"] for it in items])  # (N, 4)
    return Batch(
        x=torch.cat([it["x"] for it in items]),
        market=torch.stack([it["market"] for it in items]),
        date_of_node=torch.cat([torch.full((n,), d, dtype=torch.int64) for d, n in enumerate(counts)]),
        neighbors=neighbors,
        edge_attr=torch.cat([it["edge_attr"] for it in items]),
        targets={h: targets[:, i] for i, h in enumerate(HORIZON_KEYS)},
        dates=[it["date"] for it in items],
        codes=[it["codes"] for it in items],
        counts=counts,
    )
