"""atft-kedro: cross-sectional stock-return prediction with ATFT-GAT-FAN.

Importing the package caps the thread pools of torch (OpenMP/MKL) and Polars before either is
imported: oversubscribed pools next to forked workers are what deadlocked the system this project
grows from. ``ATFT_NUM_THREADS`` (default: the number of cores, at most 16) is the one environment
variable the project reads; variables already set by the user are left alone. Under torchrun the
cores are shared among the host's processes (``LOCAL_WORLD_SIZE``).
"""

import os as _os

__version__ = "0.1.0"


def _limit_threads() -> None:
    per_process = max(1, (_os.cpu_count() or 1) // int(_os.environ.get("LOCAL_WORLD_SIZE", "1")))
    n = _os.environ.get("ATFT_NUM_THREADS") or str(min(per_process, 16))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS"):
        _os.environ.setdefault(var, n)


_limit_threads()
