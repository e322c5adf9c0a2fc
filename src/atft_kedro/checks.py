"""What the configs' ``__post_init__`` checks share."""


def whole_number(value, least: int) -> bool:
    """Whether ``value`` is an int (a bool is not one) of at least ``least``."""
    return not isinstance(value, bool) and isinstance(value, int) and value >= least
