"""What the linear skip's clip (``skip_clip``, training's ``skip_clips``) costs a training step: the
forward and backward of its part, w_h . (clamp(x, -c_h, c_h) - x), against the whole model's, on the
same date in the same run. The part runs in every step, also where no row has a clip (c_h = inf).

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        python tests/benchmarks/bench_skip_clip.py

The model of phase 3 at the default size (FAN, GAT on the torch reference, every horizon, both
skips), one date of ``--stocks`` stocks with ``--k`` random neighbours each, one thread.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stocks", type=int, default=400)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--features", type=int, default=91)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    import torch

    from atft_kedro.model.atft import ATFTGATFAN, HORIZONS, ModelConfig

    torch.set_num_threads(1)
    torch.manual_seed(0)
    n, t, f = args.stocks, 20, args.features
    model = ATFTGATFAN(ModelConfig(n_features=f, n_market=14, gat_backend="torch", linear_skip=HORIZONS, neighbour_skip=HORIZONS))
    x, market, date_of_node = torch.randn(n, t, f), torch.randn(1, t, 14), torch.zeros(n, dtype=torch.long)
    neighbors, edge_attr = torch.randint(0, n, (n, args.k)), torch.randn(n, args.k, 3)

    def step():
        out = model(x, market, date_of_node, neighbors, edge_attr)
        sum(q.sum() for h, q in out.items() if h != "gate").backward()

    def clip_part():
        model._clipped_part(x[:, -1]).sum().backward()

    seconds = {}
    for name, fn in (("step", step), ("clip_part", clip_part)):
        for _ in range(3):
            fn()
        laps = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            laps.append(time.perf_counter() - start)
        seconds[name] = min(laps)
    print(json.dumps({"stocks": n, "features": f, "k": args.k, "ms_per_step": round(1e3 * seconds["step"], 2),
                      "ms_clip_part": round(1e3 * seconds["clip_part"], 3),
                      "clip_part_share_of_step": round(seconds["clip_part"] / seconds["step"], 4)}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
