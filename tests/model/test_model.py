import math

import pytest
import torch

from atft_kedro.model import ATFTGATFAN, ModelConfig
from atft_kedro.model.fan import FrequencyAdaptiveNorm, remove_dominant_frequencies, slice_normalise
from atft_kedro.training.losses import (
    LossWeights,
    combined_loss,
    long_short_returns,
    per_date_correlations,
    pinball_loss,
    sharpe_loss,
    soft_rank,
)

F_, M_, T_ = 9, 4, 20


def _batch(sizes=(23, 31), k=6, seed=0):
    """Two dates with ragged cross-sections, graphs stacked block-diagonally."""
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    x = torch.randn(n, T_, F_, generator=g)
    market = torch.randn(len(sizes), T_, M_, generator=g)
    date_of_node = torch.cat([torch.full((s,), i) for i, s in enumerate(sizes)])
    blocks, start = [], 0
    for s in sizes:
        blocks.append(torch.randint(0, s, (s, k), generator=g) + start)
        start += s
    neighbors = torch.cat(blocks)
    neighbors[torch.rand(n, k, generator=g) < 0.2] = -1
    edge_attr = torch.randn(n, k, 3, generator=g)
    return x, market, date_of_node, neighbors, edge_attr


def _model(**kw):
    torch.manual_seed(0)
    return ATFTGATFAN(ModelConfig(n_features=F_, n_market=M_, d_model=32, dropout=0.0, gat_backend="torch", **kw))


def test_shapes_for_ragged_cross_sections_and_non_crossing_quantiles():
    model = _model()
    x, market, dates, nb, ea = _batch()
    out = model(x * 5, market, dates, nb, ea)
    assert set(out) == {"1d", "5d", "10d", "20d", "gate"}
    for h in ("1d", "5d", "10d", "20d"):
        q = out[h]
        assert q.shape == (54, 5)
        assert (q[:, 1:] >= q[:, :-1]).all()


def test_fan_removes_a_sinusoid_from_sinusoid_plus_trend():
    t = torch.arange(64, dtype=torch.float64)
    wave = torch.sin(2 * math.pi * 5 * t / 64)
    x = (wave + 0.01 * t).view(1, 64, 1)
    residual, removed = remove_dominant_frequencies(x, top_k=2)
    spec = torch.fft.rfft(residual[0, :, 0])
    assert spec[5].abs() < 1e-9  # the sinusoid's frequency is gone from the residual
    assert torch.corrcoef(torch.stack([removed[0, :, 0] - removed[0, :, 0].mean(), wave]))[0, 1] > 0.95
    torch.testing.assert_close(residual + removed, x)


def test_san_statistics_are_per_instance():
    fan = FrequencyAdaptiveNorm(F_)
    x = torch.randn(5, T_, F_)
    a = fan(x)
    other = x.clone()
    other[1:] = other[1:] * 100 + 7  # change every other stock in the batch
    b = fan(other)
    torch.testing.assert_close(a[0], b[0])
    z = slice_normalise(torch.randn(3, 20, 2) * 10 + 4, 5)
    torch.testing.assert_close(z.view(3, 4, 5, 2).mean(2), torch.zeros(3, 4, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("t, slice_len", [(20, 5), (22, 5), (21, 5), (7, 1), (3, 5)])
def test_slice_normalise_is_a_z_score_per_slice(t, slice_len):
    x = torch.randn(4, t, 3, dtype=torch.float64) * 3 + 1
    expected = []
    for start in range(0, t, slice_len):
        piece = x[:, start : start + slice_len]
        if piece.shape[1] == 1:
            expected.append(torch.zeros_like(piece))
        else:
            expected.append((piece - piece.mean(1, keepdim=True)) / (piece.std(1, keepdim=True, unbiased=False) + 1e-5))
    torch.testing.assert_close(slice_normalise(x, slice_len), torch.cat(expected, dim=1))


def test_slice_normalise_of_a_constant_slice_is_zero_with_a_finite_gradient():
    """Windows are zero before a stock's first day: such slices are constant."""
    x = torch.randn(2, 10, 3)
    x[0, :5] = 0.0
    x.requires_grad_()
    z = slice_normalise(x, 5)
    assert torch.all(z[0, :5] == 0)
    z.square().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_encoder_last_step_equals_full_causal_attention():
    from atft_kedro.model.temporal import TemporalEncoder

    torch.manual_seed(0)
    enc = TemporalEncoder(16, 4).eval()
    x = torch.randn(6, 9, 16)
    h, _ = enc.lstm(x)  # the encoder written out with the whole [T, T] causal attention
    h = enc.lstm_norm(x + torch.nn.functional.glu(enc.lstm_gate(h), dim=-1))
    causal = torch.triu(torch.ones(9, 9, dtype=torch.bool), diagonal=1)
    a, _ = enc.attn(h, h, h, attn_mask=causal, need_weights=False)
    full = enc.out(enc.attn_norm(h + torch.nn.functional.glu(enc.attn_gate(a), dim=-1))[:, -1])
    torch.testing.assert_close(enc(x), full, atol=1e-5, rtol=1e-5)


def test_pinball_loss_by_hand():
    q = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([1.0])
    loss = pinball_loss(q, y)
    assert loss.item() == pytest.approx((0.05 + 0.25 + 0.5 + 0.75 + 0.95) / 5)
    loss.backward()
    assert (q.grad < 0).all()  # raising the quantiles toward the target lowers the loss
    assert pinball_loss(q, torch.tensor([float("nan")])).item() == 0.0


def test_ic_and_rank_ic_by_hand_and_gradient_sign():
    pred = torch.tensor([0.1, 0.2, 0.3, 0.4], requires_grad=True)
    y = torch.tensor([1.0, 3.0, 2.0, 4.0])
    dates = torch.zeros(4, dtype=torch.long)
    ic, ric, valid = per_date_correlations(pred, y, dates, min_stocks=2, tau=1e-3)
    # Pearson of (1,2,3,4) and (1,3,2,4) is 0.8; their Spearman is also 0.8
    assert ic.item() == pytest.approx(0.8, abs=1e-6)
    assert ric.item() == pytest.approx(0.8, abs=1e-3)
    (-ic.mean()).backward()
    # raising the prediction of the stock with the best target raises the IC
    assert pred.grad[3] < 0 and pred.grad[0] > 0
    torch.testing.assert_close(soft_rank(torch.tensor([3.0, 1.0, 2.0]), 1e-4), torch.tensor([3.0, 1.0, 2.0]))


def test_small_or_nan_dates_are_masked_not_averaged_in():
    pred = torch.arange(30, dtype=torch.float32)
    y = pred.clone()
    y[25:] = float("nan")
    dates = torch.tensor([0] * 25 + [1] * 5)
    ic, ric, valid = per_date_correlations(pred, y, dates, min_stocks=20)
    assert valid.tolist() == [0] and ic.tolist() == pytest.approx([1.0])
    assert long_short_returns(pred, y, dates).numel() == 1


def test_sharpe_loss_by_hand():
    r = torch.tensor([0.01, 0.03], requires_grad=True)
    loss = sharpe_loss(r)
    assert loss.item() == pytest.approx(-0.02 / torch.tensor([0.01, 0.03]).std().item(), rel=1e-5)
    loss.backward()
    assert r.grad[0] < 0  # raising the worse day's return improves the Sharpe ratio
    assert sharpe_loss(torch.tensor([0.01])).item() == 0.0
    w = long_short_returns(torch.tensor([1.0, 0.0, -1.0] * 7), torch.tensor([0.02, 0.0, -0.02] * 7), torch.zeros(21, dtype=torch.long))
    assert w.item() == pytest.approx(0.02)  # +0.5 on the winner, -0.5 on the loser


def _date_by_date_loss(outputs, targets, dates, w: LossWeights, min_stocks, tau):
    """combined_loss written plainly, one date at a time (the batched version must equal it)."""
    total = 0.0
    corr = lambda a, b: torch.corrcoef(torch.stack([a, b]))[0, 1]  # noqa: E731
    for h in outputs:
        q, y = outputs[h], targets[h]
        ok = torch.isfinite(y)
        levels = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])
        diff = y[ok, None] - q[ok]
        pin = torch.maximum(levels * diff, (levels - 1) * diff).mean()
        ics, rics, ls = [], [], []
        for d in torch.unique(dates):
            rows = (dates == d) & ok
            if rows.sum() < min_stocks:
                continue
            p, t = q[rows, 2], y[rows]
            ics.append(corr(p, t))
            rics.append(corr(soft_rank(p, tau), torch.argsort(torch.argsort(t)).float() + 1))
            c = p - p.mean()
            ls.append((c / c.abs().sum() * t).sum())
        ls = torch.stack(ls)
        sharpe = -ls.mean() / (ls.std() + 1e-8) if len(ls) >= 2 else 0.0
        total = total + (w.pinball * pin - w.rank_ic * torch.stack(rics).mean() - w.ic * torch.stack(ics).mean()
                         + w.sharpe * sharpe) / len(outputs)  # fmt: skip
    return total


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_losses_equal_the_date_by_date_losses(seed):
    """Ragged dates in any node order, unknown targets, a date below min_stocks: the batched
    losses (one padded grid, no loop over dates) give the plain per-date values and gradients."""
    g = torch.Generator().manual_seed(seed)
    sizes = [31, 7, 45, 26]  # the date of 7 stocks is below min_stocks
    dates = torch.cat([torch.full((s,), 10 * i + 3) for i, s in enumerate(sizes)])[torch.randperm(sum(sizes), generator=g)]
    outputs = {h: torch.randn(len(dates), 5, generator=g).sort(1).values.requires_grad_() for h in ("1d", "5d")}
    targets = {h: torch.randn(len(dates), generator=g) * 0.02 for h in outputs}
    for y in targets.values():
        y[torch.rand(len(y), generator=g) < 0.15] = float("nan")
    loss, parts = combined_loss(outputs, targets, dates, LossWeights(), min_stocks=10, tau=0.1)
    expected = _date_by_date_loss(outputs, targets, dates, LossWeights(), 10, 0.1)
    torch.testing.assert_close(loss, expected, atol=1e-6, rtol=1e-5)
    for got, want in zip(torch.autograd.grad(loss, list(outputs.values())), torch.autograd.grad(expected, list(outputs.values()))):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-4)
    assert set(parts) == {"pinball", "rank_ic", "ic", "sharpe"} and all(math.isfinite(v) for v in parts.values())


def _grad_norm(params):
    grads = [p.grad.norm() for p in params if p.grad is not None]
    return torch.stack(grads).norm().item() if grads else 0.0


def test_gated_fusion_keeps_gat_gradients_alive():
    model = _model()
    x, market, dates, nb, ea = _batch()
    y = {h: torch.randn(54) for h in ("1d", "5d", "10d", "20d")}
    loss, _ = combined_loss(model(x, market, dates, nb, ea), y, dates, LossWeights(), min_stocks=10)
    loss.backward()
    assert _grad_norm(model.gat.parameters()) > 1e-6
    assert model.fusion_gate.grad is not None and model.fusion_gate.grad.abs() > 0


def test_what_the_bypass_protects_against():
    """Without the bypass the GAT reaches the heads only through the backbone's GAT columns; when
    those columns collapse (the seed's dilution), the GAT's gradient vanishes with them. The bypass
    (1 - s) z_g keeps a direct path, so the gradient stays alive."""
    x, market, dates, nb, ea = _batch()
    y = {h: torch.randn(54) for h in ("1d", "5d", "10d", "20d")}

    def gat_grad(gate_value):
        model = _model()
        with torch.no_grad():
            model.backbone.weight[:, model.cfg.d_model :] = 0.0  # GAT columns collapsed
            model.fusion_gate.fill_(gate_value)
        loss, _ = combined_loss(model(x, market, dates, nb, ea), y, dates, LossWeights(), min_stocks=10)
        loss.backward()
        return _grad_norm(model.gat.parameters())

    assert gat_grad(0.0) > 1e-6  # with the bypass, s = 0.5
    assert gat_grad(40.0) < 1e-10  # s = 1: no bypass, the GAT is cut off


@pytest.mark.parametrize("switch", ["fan", "gat", "horizons"])
def test_switching_a_phase_block_off_removes_it(switch):
    kw = {"use_fan": True, "use_gat": True, "horizons": (1, 5, 10, 20)}
    kw[{"fan": "use_fan", "gat": "use_gat", "horizons": "horizons"}[switch]] = (1,) if switch == "horizons" else False
    model = _model(**kw)
    x, market, dates, nb, ea = _batch()
    out = model(x, market, dates, nb, ea)
    sum(v.sum() for k, v in out.items() if k != "gate").backward()
    params = {"fan": [*model.fan.parameters(), *model.fan_select.parameters(), model.fan_scale], "gat": list(model.gat.parameters()) + [model.fusion_gate],
              "horizons": [p for h in ("5d", "10d", "20d") for p in model.heads[h].parameters()]}[switch]  # fmt: skip
    assert all(p.grad is None for p in params)
    assert any(p.grad is not None for p in model.encoder.parameters())
    if switch == "horizons":
        assert set(out) == {"1d", "gate"}


def test_parameter_count_at_default_size():
    model = ATFTGATFAN(ModelConfig(n_features=91, n_market=14))
    assert 100_000 < model.parameter_count() < 1_500_000


@pytest.mark.parametrize("gates", ["sigmoid", "softmax"])
def test_variable_selection_gates(gates):
    from atft_kedro.model.temporal import VariableSelection

    torch.manual_seed(0)
    vs = VariableSelection(7, 8, gates=gates)
    out, v = vs(torch.randn(5, 3, 7))
    assert out.shape == (5, 3, 8) and v.shape == (5, 3, 7)
    assert ((v > 0) & (v < 1)).all()
    sums = v.sum(-1)
    if gates == "softmax":  # TFT's: the features share one unit of weight
        torch.testing.assert_close(sums, torch.ones_like(sums))
    else:  # each feature gated on its own
        assert (sums - 1).abs().min() > 0.5
    with pytest.raises(ValueError, match="sigmoid' or 'softmax"):
        VariableSelection(7, 8, gates="relu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the model's fused Triton GAT runs compiled on CUDA")
def test_model_on_cuda_triton_gat_matches_torch_gat_and_trains_under_bf16():
    """The whole model on CUDA: the fused Triton GAT gives the torch GAT's outputs and gradients in
    fp32, and a bf16-autocast step (optimized mode) gives a finite loss and finite gradients."""
    from atft_kernels import GATLayer

    batch = [t.cuda() for t in _batch()]
    y = {h: torch.randn(54, device="cuda") for h in ("1d", "5d", "10d", "20d")}
    results = {}
    for backend in ("torch", "triton"):
        model = _model().cuda()
        for layer in model.modules():
            if isinstance(layer, GATLayer):
                layer.backend = backend
        out = model(*batch)
        loss, _ = combined_loss(out, y, batch[2], LossWeights(), min_stocks=10)
        loss.backward()
        results[backend] = (out, {n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    (out_t, grads_t), (out_k, grads_k) = results["torch"], results["triton"]
    for h in ("1d", "5d", "10d", "20d"):
        torch.testing.assert_close(out_k[h], out_t[h], atol=1e-4, rtol=1e-4)
    assert grads_k.keys() == grads_t.keys() and any(n.startswith("gat.") for n in grads_k)
    for name in grads_t:
        torch.testing.assert_close(grads_k[name], grads_t[name], atol=1e-4, rtol=1e-3, msg=lambda m: f"{name}: {m}")

    model = _model().cuda()
    for layer in model.modules():
        if isinstance(layer, GATLayer):
            layer.backend = "auto"  # Triton on CUDA tensors
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(*batch)
    loss, _ = combined_loss({k: v.float() for k, v in out.items()}, y, batch[2], LossWeights(), min_stocks=10)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert _grad_norm(model.gat.parameters()) > 0


def test_linear_skip_starts_as_the_model_without_it_and_adds_a_linear_map_of_the_last_day():
    x, market, dates, nb, ea = _batch()
    plain, skip = _model(linear_skip=()), _model(linear_skip=(1, 5, 10, 20))
    before, after = plain(x, market, dates, nb, ea), skip(x, market, dates, nb, ea)
    assert all(torch.equal(before[h], after[h]) for h in before)
    with torch.no_grad():
        skip.linear.weight.normal_()
        skip.linear.bias.normal_()
    shift = x[:, -1] @ skip.linear.weight.T + skip.linear.bias  # (N, horizons)
    for horizons in [(1, 5, 10, 20), (1,)]:
        a = _model(linear_skip=(), horizons=horizons)(x, market, dates, nb, ea)
        one_phase = _model(linear_skip=(1, 5, 10, 20), horizons=horizons)
        one_phase.load_state_dict(skip.state_dict())
        b = one_phase(x, market, dates, nb, ea)
        assert set(a) == set(b)
        for i, h in enumerate(horizons):
            torch.testing.assert_close(b[f"{h}d"] - a[f"{h}d"], shift[:, i : i + 1].expand(-1, 5))
    one = _model(linear_skip=(5,))
    with torch.no_grad():
        one.linear.weight.normal_()
    a, b = plain(x, market, dates, nb, ea), one(x, market, dates, nb, ea)
    assert [h for h in a if h != "gate" and not torch.equal(a[h], b[h])] == ["5d"]
    with pytest.raises(ValueError, match="unknown horizons"):
        _model(linear_skip=(2,))


def test_forecast_parts_are_the_medians_three_paths_each_computed_on_its_own():
    """parts=True: the network's median, the linear skip and the neighbour skip, each in return
    units, sum to the median; each equals its path computed by hand; a path that is off is 0."""
    x, market, dates, nb, ea = _batch()
    model = _model(linear_skip=(1, 5, 10, 20), neighbour_skip=(1, 20), lead_attribute=2)
    with torch.no_grad():
        for p in (*model.linear.parameters(), *model.neighbour.parameters()):
            p.normal_()
        model.target_scale.copy_(torch.tensor([0.02, 0.03, 0.04, 0.05]))
    out = model(x, market, dates, nb, ea, parts=True)
    assert "parts" not in model(x, market, dates, nb, ea)
    own = model.linear(x[:, -1])
    peers = model.neighbour(x[:, -1], nb, ea)
    for i, h in enumerate((1, 5, 10, 20)):
        network, mine, theirs = out["parts"][f"{h}d"].unbind(1)
        torch.testing.assert_close(network + mine + theirs, out[f"{h}d"][:, 2])
        torch.testing.assert_close(mine, own[:, i] * model.target_scale[i])
        torch.testing.assert_close(theirs, peers[:, (1, 20).index(h)] * model.target_scale[i] if h in (1, 20) else torch.zeros_like(mine))
    off = _model(linear_skip=(1, 5, 10, 20), neighbour_skip=(1, 20), lead_attribute=2, use_gat=False, horizons=(1,))
    off.load_state_dict(model.state_dict())
    parts = off(x, market, dates, nb, ea, parts=True)["parts"]
    assert set(parts) == {"1d"} and torch.equal(parts["1d"][:, 2], torch.zeros(len(x)))  # no GAT, no graph path


def test_phase_one_starts_as_phase_zero_and_fan_then_gets_a_gradient():
    """FAN is a side input scaled by fan_scale = 0 at first: switching it on (phase 1) leaves the
    function as it was, and its scale is what training moves first."""
    x, market, dates, nb, ea = _batch()
    before = _model(use_fan=False, use_gat=False, horizons=(1,))
    after = _model(use_fan=True, use_gat=False, horizons=(1, 5, 10, 20))
    after.load_state_dict(before.state_dict())
    torch.testing.assert_close(after(x, market, dates, nb, ea)["1d"], before(x, market, dates, nb, ea)["1d"], rtol=0, atol=0)
    after(x, market, dates, nb, ea)["1d"][:, 2].sum().backward()
    assert after.fan_scale.grad.abs() > 0


def test_phase_two_starts_as_phase_one_with_gat_start_previous():
    """gat_start "previous": the GAT's fusion enters through gat_share = 0, so switching the GAT on
    (phase 2) leaves phase 1's function as it was and the share gets a gradient; the seed's fusion
    ("fusion", ModelConfig's default; the project's conf sets "previous") changes it at once."""
    x, market, dates, nb, ea = _batch()
    for start, same in (("previous", True), ("fusion", False)):
        before = _model(use_fan=True, use_gat=False, gat_start=start)
        with torch.no_grad():  # a phase 1 that learned something: its weights away from their start (not the share: no gradient with the GAT off)
            for name, p in before.named_parameters():
                p.add_(0.0 if name == "gat_share" else 0.05 * torch.randn_like(p))
        after = _model(use_fan=True, use_gat=True, gat_start=start)
        after.load_state_dict(before.state_dict())
        old, new = (m(x, market, dates, nb, ea)["5d"] for m in (before, after))
        assert torch.equal(old, new) == same
    after(x, market, dates, nb, ea)["1d"][:, 2].sum().backward()
    assert after.gat_share is None and after.fusion_gate.grad.abs() > 0
    previous = _model(use_fan=True, use_gat=True, gat_start="previous")
    previous(x, market, dates, nb, ea)["1d"][:, 2].sum().backward()
    assert previous.gat_share.grad.abs() > 0
    with pytest.raises(ValueError, match="gat_start is 'fusion'"):
        _model(gat_start="gat")


def test_neighbour_skip_reads_the_neighbours_weighted_by_how_much_they_lead():
    """lead_attribute: the skip's map also reads sum_k max(edge_attr[..., a], 0) x_k, padding out;
    it starts at 0 like the rest of the skip, and an attribute the graph lacks is an error."""
    x, market, dates, nb, ea = _batch()
    plain = _model(neighbour_skip=(1, 5, 10, 20))
    led = _model(neighbour_skip=(1, 5, 10, 20), lead_attribute=2)
    skip = led.neighbour
    inputs = skip.inputs(x[:, -1], nb, ea)
    weight = ea[..., 2].clamp_min(0) * (nb >= 0)
    by_hand = torch.stack([sum(weight[i, k] * x[nb[i, k], -1] for k in range(nb.shape[1]) if nb[i, k] >= 0) + 0 * x[0, -1]
                           for i in range(len(x))])  # fmt: skip
    torch.testing.assert_close(inputs[:, F_:], by_hand)
    torch.testing.assert_close(inputs[:, :F_], skip.neighbour_mean(x[:, -1], nb, ea))
    assert torch.equal(led(x, market, dates, nb, ea)["1d"], plain(x, market, dates, nb, ea)["1d"])  # adds nothing at first
    with torch.no_grad():
        skip.linear.weight[:, F_:].normal_()
    shift = led(x, market, dates, nb, ea)["1d"] - plain(x, market, dates, nb, ea)["1d"]
    torch.testing.assert_close(shift, (by_hand @ skip.linear.weight[0, F_:])[:, None].expand(-1, 5) * led.target_scale[0])
    with pytest.raises(ValueError, match="is not one of the graph's 3 edge attributes"):
        _model(neighbour_skip=(1,), lead_attribute=3)
    some = _model(neighbour_skip=(1, 5), lead_attribute=2, lead_columns=(3, 0))  # lead_columns: only these features weighted
    assert some.neighbour.linear.in_features == F_ + 2
    torch.testing.assert_close(some.neighbour.inputs(x[:, -1], nb, ea)[:, F_:], by_hand[:, [3, 0]])
    with pytest.raises(ValueError, match="must name at least one of the"):
        _model(neighbour_skip=(1,), lead_attribute=2, lead_columns=(F_,))


def test_the_skips_sizes_leave_every_other_random_draw_as_it_was():
    """The linear and neighbour skips start at 0 without drawing from torch's generator: models
    whose skips differ in size get the same other weights and leave the generator in one state
    (so a skip option changes no run's date order or dropout before the skip is on)."""
    plain = _model()
    after_plain = torch.rand(3)
    wide = _model(linear_skip=(1, 5), neighbour_skip=(1, 5, 10, 20), lead_attribute=2, lead_columns=(3, 0), lead_bands=(2, 4))
    assert torch.equal(torch.rand(3), after_plain)
    theirs = wide.state_dict()
    for name, value in plain.state_dict().items():
        assert torch.equal(value, theirs[name]), name
    skips = [p for n, p in wide.named_parameters() if n.startswith(("linear.", "neighbour."))]
    assert len(skips) == 5 and all(not p.any() for p in skips)


def test_lead_bands_split_the_lead_weighted_sum_by_neighbour_slot():
    """lead_bands: one lead-weighted sum per band of slots ([0, b), [b, K)), which add up to the
    one sum; a band past the last slot is all zeros; bands out of order, or without a lead
    attribute, are errors."""
    x, market, dates, nb, ea = _batch()
    k = nb.shape[1]
    one = _model(neighbour_skip=(1,), lead_attribute=2, lead_columns=(3, 0)).neighbour.inputs(x[:, -1], nb, ea)
    split = _model(neighbour_skip=(1,), lead_attribute=2, lead_columns=(3, 0), lead_bands=(2,))
    assert split.neighbour.linear.in_features == F_ + 2 * 2
    inputs = split.neighbour.inputs(x[:, -1], nb, ea)
    torch.testing.assert_close(inputs[:, :F_], one[:, :F_])  # the mean as it was
    torch.testing.assert_close(inputs[:, F_ : F_ + 2] + inputs[:, F_ + 2 :], one[:, F_:])  # near + far = the one sum
    weight = ea[..., 2].clamp_min(0) * (nb >= 0)
    near = torch.stack([sum(weight[i, s] * x[nb[i, s], -1, [3, 0]] for s in range(2) if nb[i, s] >= 0) + 0 * x[0, -1, :2]
                        for i in range(len(x))])  # fmt: skip
    torch.testing.assert_close(inputs[:, F_ : F_ + 2], near)
    assert near.abs().sum() > 0 and (one[:, F_:] - near).abs().sum() > 0  # both bands carry something in this batch
    past = _model(neighbour_skip=(1,), lead_attribute=2, lead_columns=(3, 0), lead_bands=(k, k + 3)).neighbour.inputs(x[:, -1], nb, ea)
    torch.testing.assert_close(past[:, F_ : F_ + 2], one[:, F_:])
    assert torch.equal(past[:, F_ + 2 :], torch.zeros_like(past[:, F_ + 2 :]))
    for bad in [(0,), (3, 3), (4, 2)]:
        with pytest.raises(ValueError, match="must be slots in increasing order"):
            _model(neighbour_skip=(1,), lead_attribute=2, lead_bands=bad)
    with pytest.raises(ValueError, match="needs lead_attribute"):
        _model(neighbour_skip=(1,), lead_bands=(2,))


def test_neighbour_skip_starts_as_the_plain_neighbour_mean_and_adds_nothing():
    """The graph's linear path: at first a plain mean of the neighbours' last-day features (uniform
    attention) and a zero map, so switching it on changes no output; with weights it adds exactly
    its linear map of that mean, and the attention moves with the edge attributes."""
    x, market, dates, nb, ea = _batch()
    plain = _model()
    with_peers = _model(neighbour_skip=(1, 5, 10, 20))
    with_peers.load_state_dict(plain.state_dict(), strict=False)
    a, b = plain(x, market, dates, nb, ea), with_peers(x, market, dates, nb, ea)
    assert all(torch.equal(a[h], b[h]) for h in ("1d", "5d", "10d", "20d"))
    skip = with_peers.neighbour
    mean = skip.neighbour_mean(x[:, -1], nb, ea)
    valid = nb >= 0
    by_hand = (x[:, -1][nb.clamp_min(0)] * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp_min(1)
    torch.testing.assert_close(mean, by_hand)
    with torch.no_grad():
        skip.linear.weight.normal_()
        skip.attention.weight.normal_()
    b = with_peers(x, market, dates, nb, ea)
    shift = skip(x[:, -1], nb, ea)  # (N, 4)
    for i, h in enumerate(("1d", "5d", "10d", "20d")):
        torch.testing.assert_close(b[h] - a[h], shift[:, i : i + 1].expand(-1, 5))
    assert not torch.allclose(skip.neighbour_mean(x[:, -1], nb, ea), by_hand)  # attention no longer uniform
    off = _model(neighbour_skip=(1, 5, 10, 20), use_gat=False)
    off.load_state_dict(with_peers.state_dict())
    assert torch.equal(off(x, market, dates, nb, ea)["1d"], _model(use_gat=False)(x, market, dates, nb, ea)["1d"])
