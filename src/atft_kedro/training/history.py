"""The per-epoch training history as a picture."""

from __future__ import annotations

import polars as pl
from matplotlib.figure import Figure


def plot_history(history: pl.DataFrame, neutral_horizons: tuple[int, ...] = ()):
    """Four panels over the epochs of every phase: train loss, validation RankIC per horizon,
    GAT gradient norm with the fusion gate (and the GAT's share, with ``gat_start`` "previous"),
    seconds per epoch. Validation reads the training targets: the horizons in ``neutral_horizons``
    (``TrainConfig.neutral_horizons``) are labelled as scored with sector means and beta out."""
    fig = Figure(figsize=(11, 7), constrained_layout=True)
    axes = fig.subplots(2, 2)
    if history.height == 0:
        fig.suptitle("no training history yet")
        return fig
    h = history.with_row_index("step")
    x = h["step"].to_numpy()
    axes[0, 0].plot(x, h["train_loss"], marker="o")
    axes[0, 0].set_title("train loss")
    neutral = {f"{n}d" for n in neutral_horizons}
    for col in [c for c in h.columns if c.startswith("val_rank_ic_")]:
        horizon = col.removeprefix("val_rank_ic_")
        axes[0, 1].plot(x, h[col], marker="o", label=f"{horizon}, sectors and beta out" if horizon in neutral else horizon)
    axes[0, 1].axhline(0, color="grey", lw=0.5)
    axes[0, 1].set_title("validation RankIC")
    axes[0, 1].legend()
    (norm_line,) = axes[1, 0].semilogy(x, h["gat_grad_norm"], marker="o", label="GAT grad norm (left)")
    ax2 = axes[1, 0].twinx()
    (gate_line,) = ax2.plot(x, h["fusion_gate"], color="tab:orange", marker="s", label="fusion gate s (right)")
    lines, title = [norm_line, gate_line], "GAT gradient norm (log) and fusion gate"
    if "gat_share" in h.columns and h["gat_share"].is_not_nan().any():  # gat_start "previous": how far toward the fusion
        lines += ax2.plot(x, h["gat_share"], color="tab:green", marker="^", label="GAT share a (right)")
        title = "GAT gradient norm (log), fusion gate and GAT share"
    axes[1, 0].legend(handles=lines, loc="upper right")
    axes[1, 0].set_title(title)
    axes[1, 1].bar(x, h["seconds"])
    axes[1, 1].set_title("seconds per epoch")
    for ax in axes.flat:
        for boundary in h.filter(pl.col("epoch") == 0)["step"].to_list()[1:]:
            ax.axvline(boundary - 0.5, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("epoch (all phases; dashed lines start a phase)")
    return fig
