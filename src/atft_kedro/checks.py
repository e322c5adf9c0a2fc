"""What the checks share: the configs' ``__post_init__`` value tests, and an error quoted in a message."""

import math


def whole_number(value, least: int) -> bool:
    """Whether ``value`` is an int (a bool is not one) of at least ``least``."""
    return not isinstance(value, bool) and isinstance(value, int) and value >= least


def number_in(value, low: float = -math.inf, high: float = math.inf, *, below_high: bool = False, above_low: bool = False) -> bool:
    """Whether ``value`` is a finite real number (a bool is not one) in [low, high]; ``above_low``
    and ``below_high`` leave that end out."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return (value > low if above_low else value >= low) and (value < high if below_high else value <= high)


def error_line(error: BaseException, limit: int = 200) -> str:
    """``error``'s message as one line to quote: its first line (what follows is often the library's
    advice about its own options), whitespace squeezed, at most ``limit`` characters."""
    lines = str(error).strip().splitlines()
    return " ".join(lines[0].split())[:limit] if lines else ""
