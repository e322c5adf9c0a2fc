"""ATFT-GAT-FAN, composed top to bottom (SPEC section 5).

Per batch: the feature windows of every stock of one or more dates ``x [N, T, F]``, each date's
market context ``market [D, T, M]`` with ``date_of_node [N]``, and the dates' graphs stacked
block-diagonally (``neighbors [N, K]`` indexing the batch's nodes, ``edge_attr [N, K, E]``).

    x ────────── variable selection ──┐
    x ─ FAN/SAN ─ variable selection ─ x fan_scale (phase >= 1; starts at 0)
                                      + ─ temporal encoder ─ z_t [N, d]
    market ─ GRN (the selections' context)                    │
                                                               ├─ GAT over the graph ─ z_g [N, d]  (phase >= 2)
    z = s * backbone([z_t, z_g]) + (1 - s) z_g,  s = sigmoid(g), g = 0 at init
      (gat_start "previous": z = plain + a (that - plain), plain = backbone([z_t, 0]), a = 0 at init)
    quantile head per horizon (5 non-crossing quantiles; the point forecast is the median)
      + a linear map of the last day's features x[:, -1] for the ``linear_skip`` horizons (starts at 0)
      + with the GAT on: a linear map of an attention-weighted mean of the neighbours' last-day
        features, the attention a learned function of the edge attributes (``neighbour_skip``),
        and of their sum weighted by how much each neighbour leads (``lead_attribute``; of the
        features ``lead_columns``, in the default configuration the last day's returns)
    times ``target_scale`` (per horizon): the network works in units of a typical return

FAN's two parts (the normalised residual and the removed dominant frequencies) are a side input
with a selection of their own, scaled by ``fan_scale`` that starts at 0: phase 1 starts as exactly
phase 0's function and learns how much of FAN to use. The GAT's fusion, as the seed has it, is not
such a side input: switching it on halves the backbone's output (s = 0.5) and adds half of an
untrained GAT's, which costs the full-size market's phase 2 0.0015-0.0046 of 1-day validation
RankIC before its graph path, where the network carries part of the forecast. With ``gat_start``
"previous" (the project's setting since phases 2-3 ended higher with it in three full-size seeds;
``fusion`` stays the dataclass's default, the seed's) the fusion enters through ``gat_share``, 0 at
first, and phase 2 starts as exactly phase 1's function. (In the features' place, FAN's per-window
normalisation erases the cross-sectional level that carries the signal: docs/what_training_has_shown.md.)

The linear skip gives the network a ridge regression's reach on a stock's own features, and the
neighbour skip, the graph's linear path, the reach of a ridge on its neighbours' mean features,
from the phase the graph is switched on. The neighbour skip's attention starts uniform and learns
from the edge attributes whom to listen to (e.g. larger, more liquid peers; peers that move a day
earlier); it runs through the same fused ``gat_attention`` op as the GAT. A softmax weighs the
neighbours relative to each other, so it cannot say that one stock has three strong leaders and
another none; with ``lead_attribute`` the skip also maps sum_k max(c_k, 0) x_k, c_k the edge
attribute that measures how much neighbour k's return leads the stock's by a day (the graph's
``neighbour_leads_long``): a stock's followed peers, weighted as a lead-lag regression would weigh
them. ``lead_columns`` keeps that sum to a few features (training's ``lead_features``: the last
day's returns): a ridge on all 91 weighted features does worse on validation than on those five.
``lead_bands`` splits the sum by neighbour slot (a date's neighbours come in order of their
score): on the default market the nearest 10 carry the lead-lag and the rest mostly add noise
(validation RankIC of the sum alone 0.074 over the first 10 slots, 0.065 over all 20), and with
one sum per band the map weighs them apart.
With ``head_init`` small, the network starts as these linear paths and the deep part grows from
there (how much of the ranking each path ends up carrying: ``forward(..., parts=True)``, which the
evaluation reports as ``forecast_parts``).

``skip_clip`` (per row of the linear skip, saved with the weights; +inf, no clip, unless
training's ``skip_clips`` chose one on validation) winsorises that row's inputs at +-c: the
features are per-date robust z-scores clipped at 5, and a linear fit over them ranks each date by
its few far values (stocknet: a ridge on the features winsorised at 1 ranks next-day returns at
0.021 over three test periods against 0.011 as they are; on the default synthetic market
winsorising loses). Only the own-feature skip reads the clipped values; the network and the
neighbour skip see the features as they are.

``target_scale`` (a buffer, set by training from the training split's returns and saved with the
weights) puts the outputs in return units while every parameter works at order one: a daily return
is ~0.02, and Adam's steps (~lr whatever the gradient's size) would otherwise swamp weights whose
useful size is ~1e-4, the linear skip's first of all.

The switches ``use_fan``, ``use_gat`` and ``horizons`` are part of the config (each training phase
builds its model with its own), and they really change the forward pass: a block that is off is not
run, so its parameters get no gradient. Every parameter exists whatever the switches, so one
phase's weights load into the next phase's model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from atft_kedro.checks import number_in, whole_number
from atft_kedro.features.targets import HORIZONS
from atft_kernels import GATLayer, gat_attention

from .fan import FrequencyAdaptiveNorm
from .heads import QUANTILES, QuantileHead
from .temporal import GatedResidualNetwork, TemporalEncoder, VariableSelection


@dataclass(frozen=True)
class ModelConfig:
    n_features: int
    n_market: int
    d_model: int = 64
    temporal_heads: int = 4
    gat_heads: int = 4
    gat_layers: int = 2
    edge_dim: int = 3
    dropout: float = 0.1
    gat_edge_dropout: float = 0.0
    fan_top_k: int = 3
    san_slice: int = 5
    selection_gates: str = "sigmoid"  # sigmoid: each feature gated on its own | softmax: TFT's, weights sum to 1
    gat_init_scale: float = 3.0
    horizons: tuple[int, ...] = HORIZONS
    use_fan: bool = True
    use_gat: bool = True
    gat_backend: str = "auto"
    linear_skip: tuple[int, ...] = ()  # horizons whose quantiles get a linear map of the last day's features added
    neighbour_skip: tuple[int, ...] = ()  # horizons that get a linear map of the neighbours' attention-weighted last-day features (GAT on)
    lead_attribute: int | None = None  # the neighbour skip also maps sum_k max(edge_attr[..., this], 0) x_k: the neighbours weighted by how much they lead
    lead_columns: tuple[int, ...] | None = None  # ... of these feature columns only (None: every feature)
    lead_bands: tuple[int, ...] = ()  # ... one sum per band of neighbour slots, split at these slots (a date's slots are ordered by score)
    head_init: float = 1.0  # scale of the heads' last layer at init: small, the network starts as its linear paths
    gat_start: str = "fusion"  # fusion: the GAT's fusion in full from phase 2's first step | previous: through gat_share, 0 at first (phase 2 starts as phase 1's function)

    def __post_init__(self):
        for name in ("d_model", "temporal_heads", "gat_heads", "gat_layers", "fan_top_k", "san_slice"):
            if not whole_number(getattr(self, name), 1):
                raise ValueError(f"{name} is a size, a whole number >= 1, got {getattr(self, name)!r}")
        for name in ("dropout", "gat_edge_dropout"):
            if not number_in(getattr(self, name), 0, 1, below_high=True):
                raise ValueError(f"{name} is a probability in [0, 1), got {getattr(self, name)!r}")
        for name in ("head_init", "gat_init_scale"):
            if not number_in(getattr(self, name), 0):
                raise ValueError(f"{name} is a scale at initialisation, >= 0, got {getattr(self, name)!r}")
        if self.gat_start not in ("fusion", "previous"):
            raise ValueError(f"gat_start is 'fusion' (the seed's, from the first step) or 'previous' (phase 2 starts as phase 1's function), got {self.gat_start!r}")
        for name in ("temporal_heads", "gat_heads"):  # each head a d_model / heads slice
            if self.d_model % getattr(self, name):
                raise ValueError(f"d_model={self.d_model} must be divisible by {name}={getattr(self, name)}")


def _known_horizons(horizons, what: str = "") -> tuple[int, ...]:
    unknown = set(horizons) - set(HORIZONS)
    if unknown:
        raise ValueError(f"{what}unknown horizons {sorted(unknown)}; the model has {HORIZONS}")
    return tuple(horizons)


def zero_linear(n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    """A linear map that starts at 0, made without drawing from torch's generator (``skip_init``):
    the skips' sizes, which their options change, then leave every other random draw of a run (the
    other weights, the date order, dropout) as it was."""
    linear = torch.nn.utils.skip_init(nn.Linear, n_in, n_out, bias=bias)
    with torch.no_grad():
        for p in linear.parameters():
            p.zero_()
    return linear


class GraphBlock(nn.Module):
    """Stacked GATLayers (each with its gated residual) over one batch graph: [N, d] -> [N, d]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            GATLayer(cfg.d_model, cfg.gat_heads, cfg.d_model // cfg.gat_heads, cfg.edge_dim, cfg.dropout,
                     edge_dropout=cfg.gat_edge_dropout, backend=cfg.gat_backend)  # fmt: skip
            for _ in range(cfg.gat_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.d_model) for _ in range(cfg.gat_layers))

    def forward(self, z: torch.Tensor, neighbors: torch.Tensor, edge_attr: torch.Tensor | None) -> torch.Tensor:
        for layer, norm in zip(self.layers, self.norms):
            z = norm(torch.nn.functional.elu(layer(z, neighbors, edge_attr)))  # (N, d)
        return z


class NeighbourSkip(nn.Module):
    """[N, F] last-day features -> [N, outputs]: a linear map of the attention-weighted mean of each
    stock's neighbours' features, alpha_ik = softmax_k(w . edge_attr_ik), and (``lead_attribute``)
    of their sum weighted by max(edge_attr_ik[lead_attribute], 0), of the features ``lead_columns``
    (all when None); with ``lead_bands`` (slots, increasing) one such sum per band of neighbour
    slots, [0, b_1), [b_1, b_2), ..., [b_last, K): a date's neighbours come in order of their
    score, so the map can weigh the nearest apart from the rest. Both ``w`` and the map start at 0
    (a plain mean, and no contribution); a stock without neighbours gets the map's bias."""

    def __init__(self, n_features: int, edge_dim: int, n_out: int, backend: str = "auto", lead_attribute: int | None = None,
                 lead_columns: tuple[int, ...] | None = None, lead_bands: tuple[int, ...] = ()):  # fmt: skip
        super().__init__()
        if lead_attribute is not None and not 0 <= lead_attribute < edge_dim:
            raise ValueError(f"lead_attribute {lead_attribute} is not one of the graph's {edge_dim} edge attributes")
        columns = list(range(n_features)) if lead_columns is None else [int(c) for c in lead_columns]
        if not columns or not all(0 <= c < n_features for c in columns):
            raise ValueError(f"lead_columns {lead_columns} must name at least one of the {n_features} feature columns")
        bands = [int(b) for b in lead_bands]
        if any(b <= a for a, b in zip([0, *bands], bands)):
            raise ValueError(f"lead_bands {tuple(lead_bands)} must be slots in increasing order, each at least 1")
        if bands and lead_attribute is None:
            raise ValueError("lead_bands splits the lead-weighted sum, which needs lead_attribute")
        self.backend, self.lead_attribute, self.lead_bands = backend, lead_attribute, tuple(bands)
        self.register_buffer("lead_columns", torch.as_tensor(columns, dtype=torch.long), persistent=False)
        self.attention = zero_linear(edge_dim, 1, bias=False)
        self.linear = zero_linear(n_features + (0 if lead_attribute is None else len(columns) * (len(bands) + 1)), n_out)

    def inputs(self, x_last: torch.Tensor, neighbors: torch.Tensor, edge_attr: torch.Tensor | None) -> torch.Tensor:
        """[N, F] (or [N, F + B L] with the lead-weighted sums of L feature columns over B bands of
        slots) what the map reads."""
        mean = self.neighbour_mean(x_last, neighbors, edge_attr)
        if self.lead_attribute is None:
            return mean
        if edge_attr is None:
            raise ValueError("the neighbour skip weighs neighbours by an edge attribute, but the graph has none")
        weight = torch.where(neighbors >= 0, edge_attr[..., self.lead_attribute].clamp_min(0.0), 0.0)  # (N, K)
        weighted = weight[..., None] * x_last[:, self.lead_columns][neighbors.clamp_min(0)]  # (N, K, L)
        edges = [0, *self.lead_bands, max([neighbors.shape[1], *self.lead_bands])]
        led = [weighted[:, a:b].sum(1) for a, b in zip(edges, edges[1:])]  # (N, L) each; a band past the last slot is 0
        return torch.cat([mean, *led], dim=-1)

    def neighbour_mean(self, x_last: torch.Tensor, neighbors: torch.Tensor, edge_attr: torch.Tensor | None) -> torch.Tensor:
        n, f = x_last.shape
        zeros = x_last.new_zeros(n, 1)
        logits = self.attention(edge_attr) if edge_attr is not None else None  # (N, K, 1)
        # gate 0 and residual 0: the op's output is half the aggregate; slope 1: the logits as they are
        agg = gat_attention(x_last[:, None, :], zeros, zeros, neighbors, logits, x_last.new_zeros(n, f),
                            x_last.new_zeros(()), negative_slope=1.0, backend=self.backend)  # fmt: skip
        return 2.0 * agg  # (N, F)

    def forward(self, x_last: torch.Tensor, neighbors: torch.Tensor, edge_attr: torch.Tensor | None) -> torch.Tensor:
        return self.linear(self.inputs(x_last, neighbors, edge_attr))  # (N, outputs)


class ATFTGATFAN(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.fan = FrequencyAdaptiveNorm(cfg.n_features, cfg.fan_top_k, cfg.san_slice)
        self.market = GatedResidualNetwork(cfg.n_market, d, d, cfg.dropout)
        self.select = VariableSelection(cfg.n_features, d, cfg.dropout, d_context=d, gates=cfg.selection_gates)
        self.fan_select = VariableSelection(2 * cfg.n_features, d, cfg.dropout, d_context=d, gates=cfg.selection_gates)
        self.fan_scale = nn.Parameter(torch.zeros(()))  # FAN's share of the selected input: none at first
        self.encoder = TemporalEncoder(d, cfg.temporal_heads, cfg.dropout)
        self.gat = GraphBlock(cfg)
        self.backbone = nn.Linear(2 * d, d)
        self.fusion_gate = nn.Parameter(torch.zeros(()))
        # gat_start "previous": the fusion's share of the representation, none at first (as fan_scale for FAN)
        self.gat_share = nn.Parameter(torch.zeros(())) if cfg.gat_start == "previous" else None
        self.heads = nn.ModuleDict({f"{h}d": QuantileHead(d, init_scale=cfg.head_init) for h in HORIZONS})
        self.skip_horizons = _known_horizons(cfg.linear_skip, "linear_skip has ")
        self.linear = zero_linear(cfg.n_features, len(self.skip_horizons)) if self.skip_horizons else None  # starts as the model without it
        # per row of the linear skip, its inputs winsorised at +-this (training's choice): a setting,
        # saved with the weights but not a weight (the weight average leaves ``SETTINGS`` as they are)
        if self.linear is not None:
            self.register_buffer("skip_clip", torch.full((len(self.skip_horizons),), math.inf))
        self.neighbour_horizons = _known_horizons(cfg.neighbour_skip, "neighbour_skip has ")
        self.neighbour = (
            NeighbourSkip(cfg.n_features, cfg.edge_dim, len(self.neighbour_horizons), cfg.gat_backend, cfg.lead_attribute, cfg.lead_columns,
                          tuple(cfg.lead_bands))  # fmt: skip
            if self.neighbour_horizons
            else None
        )
        with torch.no_grad():  # the seed's fix: GAT columns of the backbone start 3x larger
            self.backbone.weight[:, d:] *= cfg.gat_init_scale
        self.register_buffer("target_scale", torch.ones(len(HORIZONS)))  # per horizon, in HORIZONS order
        self.use_fan, self.use_gat, self.horizons = cfg.use_fan, cfg.use_gat, _known_horizons(cfg.horizons)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint from before ``skip_clip`` was kept: its skip read the features unclipped
        if self.linear is not None:
            state_dict.setdefault(prefix + "skip_clip", torch.full_like(self.skip_clip, math.inf))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _clipped_part(self, x_last: torch.Tensor) -> torch.Tensor:
        """What winsorising each row's inputs at its ``skip_clip`` changes of the linear skip's
        output, w_h . (clamp(x, -c_h, c_h) - x): exactly 0 in a row without a clip (c_h = inf), so
        such a row gives the same bits as the plain map. (N, skip horizons)"""
        c = self.skip_clip[:, None]  # (H, 1)
        x = x_last[:, None, :]  # (N, 1, F)
        return ((x.clamp(-c, c) - x) * self.linear.weight).sum(-1)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        x: torch.Tensor,
        market: torch.Tensor,
        date_of_node: torch.Tensor,
        neighbors: torch.Tensor | None = None,
        edge_attr: torch.Tensor | None = None,
        parts: bool = False,
    ) -> dict[str, torch.Tensor]:
        """-> {"1d": [N, 5], ...} quantiles for the active horizons, plus "gate": s; with ``parts``,
        also "parts": {"1d": [N, 3], ...}, the median's three additive paths in return units, in
        ``PARTS`` order (a path the model does not have, or that is off, is 0)."""
        context = self.market(market)[date_of_node]  # (D, T, d) -> (N, T, d)
        selected, _ = self.select(x, context)  # (N, T, d)
        if self.use_fan:
            fan_selected, _ = self.fan_select(self.fan(x), context)  # (N, T, 2F) -> (N, T, d)
            selected = selected + self.fan_scale * fan_selected
        z_t = self.encoder(selected)  # (N, d)
        if self.use_gat:
            if neighbors is None:
                raise ValueError("use_gat is on but no graph was given (neighbors is None)")
            z_g = self.gat(z_t, neighbors, edge_attr)  # (N, d)
            s = torch.sigmoid(self.fusion_gate)
            z = s * self.backbone(torch.cat([z_t, z_g], dim=-1)) + (1 - s) * z_g  # (N, d)
            if self.gat_share is not None:  # from the representation without the GAT toward the fusion
                plain = self.backbone(torch.cat([z_t, torch.zeros_like(z_t)], dim=-1))
                z = plain + self.gat_share * (z - plain)
        else:
            s = torch.ones((), device=x.device)
            z = self.backbone(torch.cat([z_t, torch.zeros_like(z_t)], dim=-1))  # (N, d)
        network = {h: self.heads[f"{h}d"](z) for h in self.horizons}  # (N, 5) each
        own, peers = {}, {}  # horizon -> (N, 1): the linear paths
        if self.linear is not None:
            skip = self.linear(x[:, -1]) + self._clipped_part(x[:, -1])  # (N, skip horizons)
            own = {h: skip[:, i : i + 1] for i, h in enumerate(self.skip_horizons) if h in self.horizons}
        if self.neighbour is not None and self.use_gat:
            mapped = self.neighbour(x[:, -1], neighbors, edge_attr)  # (N, neighbour horizons)
            peers = {h: mapped[:, i : i + 1] for i, h in enumerate(self.neighbour_horizons) if h in self.horizons}
        scale = dict(zip(HORIZONS, self.target_scale))
        out = {}
        for h in self.horizons:
            q = network[h]
            for path in (own, peers):
                if h in path:
                    q = q + path[h]
            out[f"{h}d"] = q * scale[h]  # (N, 5), in return units
        out["gate"] = s
        if parts:
            zero = z.new_zeros(z.shape[0], 1)
            out["parts"] = {f"{h}d": torch.cat([network[h][:, 2:3], own.get(h, zero), peers.get(h, zero)], dim=1) * scale[h] for h in self.horizons}
        return out


# Buffers that hold a setting training chose, not a weight: the weight average copies them (an average
# of +inf with a lerp weight of 0 is NaN, and a clip is not a quantity to average).
SETTINGS = ("skip_clip",)

# The median forecast's additive paths (``forward(..., parts=True)``): the network (temporal encoder,
# FAN, GAT, through the quantile heads), the linear skip on the stock's own last-day features, and
# the neighbour skip, the graph's linear path.
PARTS = ("network", "own", "neighbours")

__all__ = ["ATFTGATFAN", "HORIZONS", "ModelConfig", "PARTS", "QUANTILES"]
