"""Typed parameters. Nodes annotate their parameters with the project's config dataclasses, so
Kedro builds and validates them (``__post_init__`` checks) before any node runs; ``typed`` lets a
node also take the plain dict a direct call passes."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


def typed(cls: type[T], value: T | dict) -> T:
    return value if isinstance(value, cls) else cls(**value)
