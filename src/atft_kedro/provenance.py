"""What an artifact was built from.

data_engineering writes ``data_fingerprint``: a content hash of the validated raw tables and of the
parameters that shape the data after them (splits, normalisation), with a short description.
Every derived artifact carries the fingerprint it was built from (graphs, training arrays,
checkpoints, the model; ``metrics.json`` names the data and the model it describes), and a node
whose inputs were built from other data than the current ``data_fingerprint`` stops with a
``StaleArtifactError`` that names them and the command that rebuilds them.

The hash covers the tables' content, not the code: a change to the feature code is not seen (the
package version is recorded beside it). A checkpoint also records ``code_version``, a hash of the
project's source, so that an interrupted run continued after the code changed trains again
rather than keep phases the old code trained.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

import atft_kedro

# the command that rebuilds each artifact from the current data
REBUILD = {
    "graphs": "kedro run --pipelines graph_construction",
    "training_arrays": "kedro run --pipelines training",
    "checkpoint": "kedro run --pipelines training",
    "model": "kedro run --pipelines training",
}


class StaleArtifactError(RuntimeError):
    """An input of a node was built from other data than the current data_engineering output."""


def data_fingerprint(tables: dict[str, pl.DataFrame], params: dict, source: str) -> dict:
    """A content hash of ``tables`` (name -> frame) and ``params``, with what a reader needs to
    recognise the data: source, stocks, first and last date, when it was made."""
    h = hashlib.sha256()
    for name in sorted(tables):
        df = tables[name]
        h.update(f"{name}:{df.height}:{df.schema}".encode())
        for column in df.columns:
            _hash_column(h, df[column])
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    quotes = tables["daily_quotes"]
    return {
        "id": h.hexdigest()[:12],
        "source": source,
        "stocks": quotes["Code"].n_unique(),
        "first_date": str(quotes["Date"].min()),
        "last_date": str(quotes["Date"].max()),
        "made_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "package_version": atft_kedro.__version__,
    }


@functools.cache
def code_version() -> str:
    """A hash of the project's Python source (the atft_kedro and atft_kernels packages, every file's
    path and bytes), the code a checkpoint was trained by. Read once a process."""
    h = hashlib.sha256()
    for package in ("atft_kedro", "atft_kernels"):
        root = Path(importlib.util.find_spec(package).origin).parent
        for path in sorted(root.rglob("*.py")):
            h.update(f"{package}/{path.relative_to(root).as_posix()}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _hash_column(h, column: pl.Series) -> None:
    """The column's values and null mask as bytes (stable across library versions, unlike
    polars' own row hashes)."""
    h.update(column.is_null().to_numpy().tobytes())
    if column.dtype == pl.String:
        h.update("\x00".join(column.fill_null("").to_list()).encode())
    else:
        h.update(column.to_physical().fill_null(0).to_numpy().tobytes())


def describe(fp: dict | None) -> str:
    if not fp:
        return "no fingerprint (built before fingerprints existed)"
    return f"{fp['source']} data {fp['id']} ({fp['stocks']} stocks, {fp['first_date']} .. {fp['last_date']}, made {fp['made_at']})"


def check_built_from(current: dict, **artifacts: dict | None) -> None:
    """Raise ``StaleArtifactError`` when an artifact's fingerprint (``name=fingerprint``) is not
    ``current``'s, naming each such artifact and the command that rebuilds it."""
    stale = {name: fp for name, fp in artifacts.items() if not fp or fp.get("id") != current["id"]}
    if not stale:
        return
    names = ", ".join(stale)
    found = "; ".join(f"{name}: {describe(fp)}" for name, fp in stale.items())
    order = sorted(stale, key=lambda name: list(REBUILD).index(name) if name in REBUILD else len(REBUILD))
    commands = " then ".join(dict.fromkeys(REBUILD.get(name, "kedro run") for name in order))
    raise StaleArtifactError(
        f"{names} {'was' if len(stale) == 1 else 'were'} built from other data than the current data_engineering "
        f"output ({describe(current)}); {found}. Rebuild: {commands} (or kedro run for everything)."
    )
