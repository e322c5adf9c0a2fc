"""ATFT-GAT-FAN as plain torch modules: no file access, no training loop."""

import torch as _torch

from .atft import ATFTGATFAN, PARTS, SETTINGS, ModelConfig

__all__ = ["ATFTGATFAN", "PARTS", "SETTINGS", "ModelConfig"]


def _initialise_vector_math() -> None:
    """One small call of an MKL vector-math function (torch's sqrt, exp, log, tanh... on contiguous
    CPU floats go to MKL VML) on this thread, before any large one. Torch splits a large call among
    its threads; when their first calls in a process meet MKL's lazy initialisation, one of them can
    take another code path whose last bits differ: the first sqrt of 20,748 floats in a fresh
    process differed in about one process in five (21 of 96, measured), and the same model scored
    the same inputs differently in 1 of 22 to 11 of 30 inference runs (with the graph code of the
    time); after one small call, in none of 40."""
    _torch.sqrt(_torch.ones(8))


_initialise_vector_math()
