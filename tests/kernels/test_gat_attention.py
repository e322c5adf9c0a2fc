"""gat_attention: the Triton backend against the torch specification, the specification against
PyG's GATConv and gradcheck. On CPU the Triton kernels run under TRITON_INTERPRET=1 (conftest);
the same comparisons run compiled on CUDA when a GPU is present."""

import pytest
import torch

from atft_kernels import GATLayer, gat_attention, gat_attention_reference, to_edge_index
from atft_kernels.triton_gat import reverse_graph

TOL = {  # per dtype: (atol, rtol) for outputs and gradients
    torch.float64: (1e-10, 1e-9),
    torch.float32: (2e-5, 2e-5),
    torch.bfloat16: (2e-2, 2e-2),
}
GRAD_NAMES = ("h", "s_src", "s_dst", "edge_logits", "residual", "gate")
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_inputs(n, heads, channels, k, *, dtype=torch.float32, device="cpu", pad=0.3, seed=0, edge=True, empty_rows=()):
    g = torch.Generator().manual_seed(seed)
    neighbors = torch.randint(0, max(n, 1), (n, k), generator=g)
    neighbors[torch.rand(n, k, generator=g) < pad] = -1
    for r in empty_rows:
        neighbors[r] = -1
    t = {
        "h": torch.randn(n, heads, channels, generator=g),
        "s_src": torch.randn(n, heads, generator=g),
        "s_dst": torch.randn(n, heads, generator=g),
        "edge_logits": torch.randn(n, k, heads, generator=g) if edge else None,
        "residual": torch.randn(n, heads * channels, generator=g),
        "gate": torch.tensor(0.4),
    }
    t = {name: (v.to(device=device, dtype=dtype).requires_grad_() if v is not None else None) for name, v in t.items()}
    return t, neighbors.to(device)


def _run(inputs, neighbors, backend, slope=0.2, deterministic=None):
    return gat_attention(inputs["h"], inputs["s_src"], inputs["s_dst"], neighbors, inputs["edge_logits"],
                         inputs["residual"], inputs["gate"], slope, backend, deterministic)  # fmt: skip


def _grads(out, inputs, upstream):
    names = [n for n in GRAD_NAMES if inputs[n] is not None]
    return dict(zip(names, torch.autograd.grad(out, [inputs[n] for n in names], upstream, allow_unused=True)))


def _compare(n, heads, channels, k, dtype=torch.float32, device="cpu", slope=0.2, neighbors=None, **kw):
    inputs, random_neighbors = make_inputs(n, heads, channels, k, dtype=dtype, device=device, **kw)
    neighbors = random_neighbors if neighbors is None else neighbors.to(device)
    ref, tri = _run(inputs, neighbors, "torch", slope), _run(inputs, neighbors, "triton", slope)
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(tri, ref, atol=atol, rtol=rtol)
    upstream = torch.randn_like(ref)
    g_ref, g_tri = _grads(ref, inputs, upstream), _grads(tri, inputs, upstream)
    for name in g_ref:
        torch.testing.assert_close(g_tri[name], g_ref[name], atol=atol * 10, rtol=rtol * 10, msg=lambda m: f"d{name}: {m}")
    return inputs, neighbors, ref, g_ref


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("n", "heads", "channels", "k"),
    [(37, 3, 5, 6), (64, 4, 16, 20), (129, 2, 24, 7), (10, 1, 3, 1)],
)
def test_triton_matches_reference(device, n, heads, channels, k):
    _compare(n, heads, channels, k, device=device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("deterministic", [False, True])
def test_int32_neighbour_lists_give_the_int64_results(device, deterministic):
    """Training's resident batches hold int32 neighbour lists (half the bytes): the same output and
    gradients as int64, both backends."""
    inputs, neighbors = make_inputs(50, 2, 8, 6, device=device, empty_rows=(0,))
    upstream = torch.randn(50, 16, device=device)
    for backend in ("torch", "triton"):
        wide = _run(inputs, neighbors, backend, deterministic=deterministic)
        narrow = _run(inputs, neighbors.to(torch.int32), backend, deterministic=deterministic)
        torch.testing.assert_close(narrow, wide, rtol=0, atol=0)
        for a, b in zip(_grads(narrow, inputs, upstream).values(), _grads(wide, inputs, upstream).values()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("slope", [0.0, 0.01, 0.5])
def test_leaky_relu_slopes_other_than_the_default(device, slope):
    inputs, neighbors, ref, _ = _compare(40, 2, 4, 6, device=device, slope=slope)
    # the slope reaches the result: another slope gives another output (so a kernel that ignored it would fail)
    assert not torch.allclose(ref, _run(inputs, neighbors, "torch", 0.2 if slope != 0.2 else 0.0))


@pytest.mark.parametrize("device", DEVICES)
def test_a_hub_graph(device):
    """Real kNN graphs have hubs (in-degree in the hundreds against a mean of k): most rows list
    node 0 and node 1 among their neighbours, so their gradients gather from nearly every row."""
    n, k = 96, 8
    neighbors = _hub_graph(n, k)
    assert (neighbors == 0).sum() > n * 0.8
    _compare(n, 3, 8, k, device=device, neighbors=neighbors)


def _hub_graph(n: int, k: int, seed: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    neighbors = torch.randint(0, n, (n, k), generator=g)
    neighbors[:, 0], neighbors[::2, 1] = 0, 1
    neighbors[torch.rand(n, k, generator=g) < 0.1] = -1
    return neighbors


def test_reverse_graph_lists_each_sources_incoming_slots_in_slot_order():
    neighbors = torch.tensor([[1, 2, -1], [2, -1, 0], [1, 1, 2]])
    rev_ptr, rev_slot = reverse_graph(neighbors)
    assert rev_ptr.tolist() == [0, 1, 4, 7]
    # source 0: slot (1, 2); source 1: slots (0, 0), (2, 0), (2, 1); source 2: (0, 1), (1, 0), (2, 2)
    assert rev_slot[:7].tolist() == [5, 0, 6, 7, 1, 3, 8]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("edge", [True, False])
def test_deterministic_backward_matches_the_reference_and_repeats_to_the_bit(device, edge):
    """The reverse-graph backward on a hub graph: the reference's gradients, and two runs
    bit-identical (atomics would add a hub's hundreds of terms in the order programs reach them)."""
    n, heads, channels, k = 96, 3, 8, 8
    neighbors = _hub_graph(n, k).to(device)
    inputs, _ = make_inputs(n, heads, channels, k, device=device, edge=edge)
    ref = _run(inputs, neighbors, "torch")
    upstream = torch.randn_like(ref)
    g_ref = _grads(ref, inputs, upstream)
    runs = [_grads(_run(inputs, neighbors, "triton", deterministic=True), inputs, upstream) for _ in range(2)]
    atol, rtol = TOL[torch.float32]
    for name in g_ref:
        torch.testing.assert_close(runs[0][name], g_ref[name], atol=atol * 10, rtol=rtol * 10, msg=lambda m: f"d{name}: {m}")
        assert torch.equal(runs[0][name], runs[1][name]), name


def test_the_reverse_graph_reads_nothing_back_to_the_host():
    """The deterministic backward builds it on the device: the run starts come from searchsorted,
    not bincount (whose output size is read back from a CUDA device), so the step never waits."""
    from atft_kedro.training.host_reads import HostReads

    _, neighbors = make_inputs(40, 1, 1, 5)
    with HostReads() as reads:
        reverse_graph(neighbors)
    assert reads.total == 0, reads.calls


def test_deterministic_backward_is_chosen_with_torchs_deterministic_algorithms(monkeypatch):
    from atft_kernels import triton_gat

    built = []
    monkeypatch.setattr(triton_gat, "reverse_graph", lambda nb: built.append(nb) or reverse_graph(nb))
    inputs, neighbors = make_inputs(20, 2, 4, 3)
    _run(inputs, neighbors, "triton")
    assert not built
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        _run(inputs, neighbors, "triton").sum().backward()
    finally:
        torch.use_deterministic_algorithms(was)
    assert len(built) == 1


@pytest.mark.parametrize("device", DEVICES)
def test_without_edge_logits(device):
    _compare(50, 2, 8, 5, device=device, edge=False)


@pytest.mark.parametrize("device", DEVICES)
def test_padding_rows_and_isolated_nodes(device):
    inputs, neighbors, ref, grads = _compare(40, 2, 8, 4, device=device, pad=0.5, empty_rows=(0, 7, 39))
    s = torch.sigmoid(inputs["gate"])
    for r in (0, 7, 39):  # no valid neighbour: aggregate 0, only the residual remains
        torch.testing.assert_close(ref[r], s * inputs["residual"][r])
        assert torch.all(grads["s_dst"][r] == 0)
    isolated = torch.ones(40, dtype=torch.bool, device=neighbors.device)
    isolated[neighbors[neighbors >= 0]] = False  # nodes that are nobody's neighbour
    assert isolated.any()
    assert torch.all(grads["h"][isolated] == 0) and torch.all(grads["s_src"][isolated] == 0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_empty_graph(device, backend):
    inputs, neighbors = make_inputs(0, 2, 4, 3, device=device)
    out = _run(inputs, neighbors, backend)
    assert out.shape == (0, 8)
    out.sum().backward()
    assert inputs["h"].grad.shape == (0, 2, 4)


@pytest.mark.parametrize("device", DEVICES)
def test_all_padding(device):
    inputs, neighbors = make_inputs(12, 2, 4, 3, device=device, pad=1.0)
    out = _run(inputs, neighbors, "triton")
    torch.testing.assert_close(out, torch.sigmoid(inputs["gate"]) * inputs["residual"])


@pytest.mark.parametrize("device", DEVICES)
def test_float64_triton_matches_reference(device):
    _compare(33, 2, 6, 5, dtype=torch.float64, device=device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 runs on the GPU backend")
@pytest.mark.parametrize(("n", "heads", "channels", "k"), [(300, 4, 16, 20), (77, 3, 5, 6)])
def test_bfloat16_on_cuda(n, heads, channels, k):
    _compare(n, heads, channels, k, dtype=torch.bfloat16, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 runs on the GPU backend")
@pytest.mark.parametrize("deterministic", [False, True])
def test_the_mixed_dtypes_of_autocast_on_cuda(deterministic):
    """What GATLayer hands the op under bf16 autocast: h, edge logits and residual in bf16 (matmul
    outputs), s_src and s_dst in fp32 (bf16 x fp32 parameter promotes); against the fp64 reference."""
    inputs, neighbors = make_inputs(300, 4, 16, 20, device="cuda")
    low = {"h", "edge_logits", "residual"}
    mixed = {k: v.detach().to(torch.bfloat16 if k in low else torch.float32).requires_grad_() for k, v in inputs.items()}
    exact = {k: v.detach().double().requires_grad_() for k, v in mixed.items()}
    ref, out = _run(exact, neighbors, "torch"), _run(mixed, neighbors, "triton", deterministic=deterministic)
    assert out.dtype == torch.bfloat16
    rel = lambda a, b: float((a.detach().double() - b).norm() / b.norm())  # noqa: E731
    assert rel(out, ref) < 1e-2
    upstream = torch.randn_like(ref)
    g_ref, g_out = _grads(ref, exact, upstream), _grads(out, mixed, upstream.to(out.dtype))
    for name in g_ref:
        assert g_out[name].dtype == mixed[name].dtype, name
        assert rel(g_out[name], g_ref[name]) < 2e-2, name


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_gradcheck_float64(device, backend):
    inputs, neighbors = make_inputs(9, 2, 3, 4, dtype=torch.float64, device=device, empty_rows=(2,))
    names = list(GRAD_NAMES)

    def f(*tensors):
        kw = dict(zip(names, tensors))
        return gat_attention(kw["h"], kw["s_src"], kw["s_dst"], neighbors, kw["edge_logits"], kw["residual"], kw["gate"], 0.2, backend)

    # fast mode (random projections of the Jacobian) keeps the interpreted kernel to a few launches
    fast = backend == "triton" and device == "cpu"
    assert torch.autograd.gradcheck(f, tuple(inputs[n] for n in names), eps=1e-6, atol=1e-6, fast_mode=fast)


def test_matches_pyg_gatconv():
    """With residual 0 and gate 0, 2 * out equals GATConv(edge_dim=3, add_self_loops=False, bias=False)."""
    from torch_geometric.nn import GATConv

    torch.manual_seed(0)
    n, k, heads, channels, in_dim = 31, 5, 3, 4, 7
    conv = GATConv(in_dim, channels, heads=heads, edge_dim=3, add_self_loops=False, bias=False)
    x = torch.randn(n, in_dim)
    neighbors = torch.stack([torch.randperm(n)[:k] for _ in range(n)])
    neighbors[neighbors == torch.arange(n)[:, None]] = -1  # no self loops
    neighbors[3, 2:] = -1
    edge_attr = torch.randn(n, k, 3)
    edge_index, flat_attr = to_edge_index(neighbors, edge_attr)
    assert edge_index.shape == (2, int((neighbors >= 0).sum())) and (edge_index[1] == 3).sum() == (neighbors[3] >= 0).sum()
    expected = conv(x, edge_index, edge_attr=flat_attr)

    h = conv.lin(x).view(n, heads, channels)
    s_src, s_dst = (h * conv.att_src).sum(-1), (h * conv.att_dst).sum(-1)
    edge_logits = (conv.lin_edge(edge_attr).view(n, k, heads, channels) * conv.att_edge).sum(-1)
    for backend in ("torch", "triton"):
        out = gat_attention(h, s_src, s_dst, neighbors, edge_logits, torch.zeros(n, heads * channels), torch.tensor(0.0), 0.2, backend)
        torch.testing.assert_close(2 * out, expected, atol=1e-5, rtol=1e-5)

    layer = GATLayer(in_dim, heads, channels, edge_dim=3, bias=False)
    with torch.no_grad():
        layer.lin.weight.copy_(conv.lin.weight)
        layer.att_src.copy_(conv.att_src)
        layer.att_dst.copy_(conv.att_dst)
        layer.lin_edge.weight.copy_(conv.lin_edge.weight)
        layer.att_edge.copy_(conv.att_edge)
        layer.lin_res.weight.zero_()
    torch.testing.assert_close(2 * layer(x, neighbors, edge_attr), expected, atol=1e-5, rtol=1e-5)


def test_reference_gate_extremes():
    inputs, neighbors = make_inputs(20, 2, 4, 3)
    args = [inputs[n] for n in ("h", "s_src", "s_dst")] + [neighbors, inputs["edge_logits"], inputs["residual"]]
    open_gate = gat_attention_reference(*args, torch.tensor(30.0))
    torch.testing.assert_close(open_gate, inputs["residual"], atol=1e-6, rtol=0)


def test_bad_shapes_are_clear_errors():
    inputs, neighbors = make_inputs(10, 2, 4, 3)
    with pytest.raises(ValueError, match=r"s_src must have shape \(10, 2\), got \(10, 3\)"):
        gat_attention(inputs["h"], torch.zeros(10, 3), inputs["s_dst"], neighbors, None, inputs["residual"], inputs["gate"])
    with pytest.raises(ValueError, match="neighbors must be int32 or int64"):
        gat_attention(inputs["h"], inputs["s_src"], inputs["s_dst"], neighbors.float(), None, inputs["residual"], inputs["gate"])
    with pytest.raises(ValueError, match="backend must be one of"):
        gat_attention(*[inputs[n] for n in ("h", "s_src", "s_dst")], neighbors, None, inputs["residual"], inputs["gate"], backend="cuda")


@pytest.mark.parametrize("device", DEVICES)
def test_gat_layer_backends_agree_and_train(device):
    torch.manual_seed(1)
    layer = GATLayer(12, heads=4, head_dim=8, edge_dim=3).to(device)
    x = torch.randn(50, 12, device=device)
    _, neighbors = make_inputs(50, 1, 1, 6, device=device)
    edge_attr = torch.randn(50, 6, 3, device=device)
    layer.backend = "torch"
    a = layer(x, neighbors, edge_attr)
    layer.backend = "triton"
    b = layer(x, neighbors, edge_attr)
    torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)
    b.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
    assert layer.gate.grad.abs() > 0
    layer.reset_parameters()
    assert layer.gate.item() == 0.0


def _edge_attr_inputs(n, heads, channels, k, e, dtype, device, seed=0):
    inputs, neighbors = make_inputs(n, heads, channels, k, dtype=dtype, device=device, edge=False, seed=seed, empty_rows=(2,))
    g = torch.Generator().manual_seed(seed + 1)
    inputs["edge_attr"] = torch.randn(n, k, e, generator=g).to(device=device, dtype=dtype)  # data: no gradient
    inputs["edge_weight"] = torch.randn(heads, e, generator=g).to(device=device, dtype=dtype).requires_grad_()
    return inputs, neighbors


def _run_attr(inputs, neighbors, backend, deterministic=None):
    return gat_attention(inputs["h"], inputs["s_src"], inputs["s_dst"], neighbors, None, inputs["residual"], inputs["gate"], 0.2,
                         backend, deterministic, edge_attr=inputs["edge_attr"], edge_weight=inputs["edge_weight"])  # fmt: skip


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize(("heads", "channels", "e"), [(3, 5, 7), (4, 16, 3), (1, 6, 1)])
def test_edge_attributes_projected_inside_the_kernels(device, dtype, deterministic, heads, channels, e):
    """edge_attr [N, K, E] with edge_weight [H, E]: the kernels compute the edge logits themselves;
    output and every gradient (the weight's included) equal the reference's product-then-op."""
    inputs, neighbors = _edge_attr_inputs(45, heads, channels, 6, e, dtype, device)
    ref, tri = _run_attr(inputs, neighbors, "torch"), _run_attr(inputs, neighbors, "triton", deterministic)
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(tri, ref, atol=atol, rtol=rtol)
    names = ["h", "s_src", "s_dst", "residual", "gate", "edge_weight"]
    upstream = torch.randn_like(ref)
    want = torch.autograd.grad(ref, [inputs[n] for n in names], upstream)
    got = torch.autograd.grad(tri, [inputs[n] for n in names], upstream)
    for name, g, w in zip(names, got, want):
        torch.testing.assert_close(g, w, atol=atol * 10, rtol=rtol * 10, msg=lambda m: f"d{name}: {m}")
    if deterministic:  # the weight's gradient too: per-program parts added in a fixed order
        again = torch.autograd.grad(_run_attr(inputs, neighbors, "triton", True), [inputs[n] for n in names], upstream)
        assert all(torch.equal(a, b) for a, b in zip(again, got))


def test_edge_attributes_are_checked():
    inputs, neighbors = _edge_attr_inputs(10, 2, 3, 4, 5, torch.float32, "cpu")
    args = [inputs[n] for n in ("h", "s_src", "s_dst")]
    rest = (inputs["residual"], inputs["gate"])
    with pytest.raises(ValueError, match="either edge_logits or edge_attr"):
        gat_attention(*args, neighbors, torch.zeros(10, 4, 2), *rest, edge_attr=inputs["edge_attr"], edge_weight=inputs["edge_weight"])
    with pytest.raises(ValueError, match=r"edge_weight \[H=2, E\]"):
        gat_attention(*args, neighbors, None, *rest, edge_attr=inputs["edge_attr"], edge_weight=torch.zeros(3, 5))
    with pytest.raises(ValueError, match="edge_attr is data"):
        gat_attention(*args, neighbors, None, *rest, edge_attr=inputs["edge_attr"].requires_grad_(), edge_weight=inputs["edge_weight"])


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("option", ["fused_projection", "edge_in_kernel"])
def test_the_layer_options_give_the_same_layer(backend, option):
    """fused_projection (h, s_src, s_dst and the residual from one matrix product of stacked
    weights) and edge_in_kernel (the op computes the edge logits): the same output and gradients
    for the input and every parameter, and the same state_dict (checkpoints load either way)."""
    torch.manual_seed(5)
    plain = GATLayer(12, heads=4, head_dim=8, edge_dim=7, backend=backend)
    other = GATLayer(12, heads=4, head_dim=8, edge_dim=7, backend=backend, **{option: True})
    other.load_state_dict(plain.state_dict())
    x = torch.randn(45, 12, requires_grad=True)
    _, neighbors = make_inputs(45, 1, 1, 6)
    edge_attr = torch.randn(45, 6, 7)
    a, b = plain(x, neighbors, edge_attr), other(x, neighbors, edge_attr)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    upstream = torch.randn_like(a)
    want = torch.autograd.grad(a, [x, *plain.parameters()], upstream)
    got = torch.autograd.grad(b, [x, *other.parameters()], upstream)
    for name, g, w in zip(["x", *(n for n, _ in plain.named_parameters())], got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize(("edge", "deterministic"), [(True, False), (False, True)])
def test_the_triton_op_passes_torch_librarys_checks(edge, deterministic):
    """The op is a torch.library custom op: its schema, fake (shape-only) function and autograd
    registration agree with what it does (torch's own opcheck, forward and backward)."""
    from atft_kernels import triton_gat

    inputs, neighbors = make_inputs(37, 3, 5, 6, edge=edge)
    args = [inputs[n] for n in ("h", "s_src", "s_dst")] + [neighbors, inputs["edge_logits"], inputs["residual"], inputs["gate"]]
    torch.library.opcheck(triton_gat._forward, (*args, 0.2, deterministic))


@pytest.mark.parametrize("deterministic", [False, True])
def test_the_triton_op_with_edge_attributes_passes_torch_librarys_checks(deterministic):
    from atft_kernels import triton_gat

    inputs, neighbors = _edge_attr_inputs(37, 3, 5, 6, 7, torch.float32, "cpu")
    args = [inputs[n] for n in ("h", "s_src", "s_dst")] + [neighbors, None, inputs["residual"], inputs["gate"]]
    torch.library.opcheck(triton_gat._forward, (*args, 0.2, deterministic, inputs["edge_attr"], inputs["edge_weight"]))


def test_torch_compile_traces_a_layer_on_the_triton_op_whole():
    """fullgraph=True fails on any graph break: the op (forward and its registered backward) is one
    node of the compiled graph, as capturing a training step whole needs; results equal eager's."""
    torch.manual_seed(3)
    layer = GATLayer(12, heads=4, head_dim=8, edge_dim=3, backend="triton")
    x = torch.randn(40, 12, requires_grad=True)
    _, neighbors = make_inputs(40, 1, 1, 6)
    edge_attr = torch.randn(40, 6, 3)
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    eager_out, compiled_out = layer(x, neighbors, edge_attr), compiled(x, neighbors, edge_attr)
    torch.testing.assert_close(compiled_out, eager_out)
    upstream = torch.randn_like(eager_out)
    eager = torch.autograd.grad(eager_out, [x, *layer.parameters()], upstream)
    traced = torch.autograd.grad(compiled_out, [x, *layer.parameters()], upstream)
    for a, b in zip(traced, eager):
        torch.testing.assert_close(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_a_layer_on_the_triton_op_replays_from_cuda_graphs():
    """A GATLayer's forward and backward each captured in a CUDA graph (the op reads nothing back
    to the host): the replays give eager's output and gradients."""
    torch.manual_seed(4)
    layer = GATLayer(12, heads=4, head_dim=8, edge_dim=3, backend="triton").cuda()
    x = torch.randn(300, 12, device="cuda", requires_grad=True)
    _, neighbors = make_inputs(300, 1, 1, 8, device="cuda")
    edge_attr = torch.randn(300, 8, 3, device="cuda")
    params = [x, *layer.parameters()]
    expected_out = layer(x, neighbors, edge_attr)
    expected = torch.autograd.grad(expected_out.square().sum(), params)
    graphed = torch.cuda.make_graphed_callables(layer, (x, neighbors, edge_attr))
    out = graphed(x, neighbors, edge_attr)
    torch.testing.assert_close(out, expected_out)
    for got, want in zip(torch.autograd.grad(out.square().sum(), params), expected):
        torch.testing.assert_close(got, want)


def test_edge_dropout_only_in_training():
    torch.manual_seed(2)
    layer = GATLayer(12, heads=2, head_dim=4, edge_dim=3, edge_dropout=1.0, backend="torch")
    x = torch.randn(30, 12)
    _, neighbors = make_inputs(30, 1, 1, 5, pad=0.0)
    edge_attr = torch.randn(30, 5, 3)
    layer.train()
    all_dropped = layer(x, neighbors, edge_attr)  # every slot dropped: only the gated residual is left
    expected = torch.sigmoid(layer.gate) * layer.lin_res(x) + layer.bias
    torch.testing.assert_close(all_dropped, expected)
    layer.eval()
    assert not torch.allclose(layer(x, neighbors, edge_attr), expected)


def test_small_graphs_get_smaller_row_blocks_to_fill_the_gpu():
    """At one date (3,800 rows) the backward's 32-row programs would number 119 on an H200's 132
    SMs; the row block halves until there are two programs per SM. Large graphs keep their block."""
    from atft_kernels.triton_gat import _filled_rows

    assert _filled_rows(3800, 32, 132) == 8  # 475 programs
    assert _filled_rows(3800, 8, 132) == 8
    assert _filled_rows(64 * 3800, 32, 132) == 32 and _filled_rows(8 * 3800, 32, 132) == 32
    assert _filled_rows(10, 32, 132) == 2 and _filled_rows(3800, 32, None) == 32
