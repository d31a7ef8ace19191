"""Params and MACs of the published variants, from the search-space description, against the paper.

    python benchmarks/params_macs.py

The paper's README lists 3.5/6.1/12.6/26.1 M params and 0.40/0.65/1.25/2.56 GMACs; its counter
(toolbox.py) skips BatchNorm. ``params`` here counts every nn.Parameter (BN, layer scale and the
distillation head included), which is what timm reports.
"""
import time

import torch

from models import EfficientFormerV2
from nas.space.metrics import count_macs, count_params
from nas.space.spaces import DEFAULT_SPACE

PAPER = {"s0": (3.5, 0.40), "s1": (6.1, 0.65), "s2": (12.6, 1.25), "l": (26.1, 2.56)}


def main():
    print(f"{'variant':8} {'params M':>9} {'paper M':>8} {'ratio':>6} {'GMACs':>7} {'paper G':>8} {'ratio':>6} "
          f"{'built==analytic':>16} {'analytic us':>12}")
    for v, (p_paper, g_paper) in PAPER.items():
        arch = DEFAULT_SPACE.canonical(v)
        t = time.perf_counter()
        params, macs = count_params(arch), count_macs(arch)
        dt = (time.perf_counter() - t) * 1e6
        built = sum(p.numel() for p in EfficientFormerV2(arch.net_config()).parameters())
        print(f"{v:8} {params / 1e6:9.3f} {p_paper:8.1f} {params / 1e6 / p_paper:6.3f} {macs / 1e9:7.3f} "
              f"{g_paper:8.2f} {macs / 1e9 / g_paper:6.3f} {str(built == params):>16} {dt:12.0f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
