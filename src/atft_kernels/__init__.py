"""atft_kernels: the fused GAT attention + gated residual op and the GATLayer built on it.

``gat_attention(h, s_src, s_dst, neighbors, edge_logits, residual, gate, negative_slope=0.2,
backend="auto") -> [N, H*C]`` (SPEC section 8). ``backend="auto"`` takes the Triton kernel for CUDA
tensors when Triton is installed and the torch reference otherwise; ``"triton"`` or ``"torch"``
force one (``"triton"`` on CPU tensors needs ``TRITON_INTERPRET=1`` set before import).
"""

from .layer import GATLayer
from .ops import gat_attention, resolve_backend, to_edge_index, triton_available
from .reference import gat_attention_reference

__all__ = ["GATLayer", "gat_attention", "gat_attention_reference", "resolve_backend", "to_edge_index", "triton_available"]
