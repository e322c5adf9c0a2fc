"""The experiments' log: training's lines, plain, on stderr, in place of kedro's rich handler."""

from __future__ import annotations

import logging


def plain_log() -> None:
    import kedro.framework.project  # noqa: F401  (sets kedro's logging on import: replaced below)

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.root.handlers[:] = [handler]
    logging.root.setLevel(logging.INFO)
