"""Build a network from the search space and print its size, cost and architecture JSON.

    python -m nas.describe                      # EfficientFormerV2-S0 at 224 px
    python -m nas.describe --model l --img-size 64
    python -m nas.describe --arch my_arch.json  # any point of the space
    python -m nas.describe --space              # the search space and its latency units
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from models import EfficientFormerV2

from nas.space.units import space_units
from nas.core.cli import command
from nas.space.metrics import MES, count_macs, count_params
from nas.space.spaces import Arch, ArchError, get_space


@command
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nas.describe", description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--model", default="s0", help="published variant: s0, s1, s2 or l (default: s0)")
    g.add_argument("--arch", help="architecture JSON (a file path or the JSON text itself)")
    g.add_argument("--space", action="store_true", help="describe the search space instead of one network")
    ap.add_argument("--search-space", default="efficientformerv2", help="space name or JSON file")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--num-classes", type=int, default=1000)
    ap.add_argument("--latency-ms", type=float, help="a measured latency, to print the MES")
    args = ap.parse_args(argv)

    try:
        space = get_space(args.search_space)
        if args.space:
            units = space_units(space, args.img_size, args.num_classes)
            print(json.dumps(space.to_dict(), indent=2))
            print(f"architectures: {space.cardinality():.3e}")
            kinds = {}
            for u in units:
                kinds[u.kind] = kinds.get(u.kind, 0) + 1
            print(f"latency units at {args.img_size} px: {len(units)} ({', '.join(f'{k} {n}' for k, n in kinds.items())})")
            return 0
        arch = space.validate(Arch.from_json(args.arch)) if args.arch else space.canonical(args.model)
        net = EfficientFormerV2(arch.net_config(args.num_classes), img_size=args.img_size).eval()
    except (ArchError, KeyError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with torch.no_grad():
        out = net(torch.randn(1, 3, args.img_size, args.img_size))
    params = count_params(arch, args.num_classes, args.img_size)
    assert params == sum(p.numel() for p in net.parameters())
    macs = count_macs(arch, args.img_size, args.num_classes)
    print(f"architecture: {arch.summary()}")
    print(f"params: {params:,} ({params / 1e6:.3f} M)")
    print(f"MACs @ {args.img_size}px: {macs:,} ({macs / 1e9:.3f} G)")
    print(f"output: {tuple(out.shape)}")
    if args.latency_ms:
        print(f"MES (params, {args.latency_ms} ms): {MES()(params=params, latency_ms=args.latency_ms):.1f}")
    print(arch.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
