"""Build a network from the search space and print its size, cost and architecture JSON.

    python -m nas.describe                      # EfficientFormerV2-S0 at 224 px
    python -m nas.describe --model l --img-size 64
    python -m nas.describe --arch my_arch.json  # any point of the space
    python -m nas.describe --space              # the search space and its latency units
"""
from __future__ import annotations

import json
import sys

import torch

from models import EfficientFormerV2
from nas.cli.common import doc_summary
from nas.core.cli import ArgumentParser, add_common_args, command, img_size, positive_float, positive_int
from nas.space.arch import Arch
from nas.space.metrics import MES, count_macs, count_params
from nas.space.spaces import get_space
from nas.space.units import space_units

__all__ = ["main"]


@command
def main(argv=None) -> int:
    ap = ArgumentParser(prog="python -m nas.describe", description=doc_summary(__doc__))
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--model", default="s0", help="published variant: s0, s1, s2 or l (default: s0)")
    g.add_argument("--arch", help="architecture JSON (a file path or the JSON text itself)")
    g.add_argument("--space", action="store_true", help="describe the search space instead of one network")
    ap.add_argument("--search-space", default="efficientformerv2", help="space name or JSON file")
    ap.add_argument("--img-size", type=img_size, default=224)
    ap.add_argument("--num-classes", type=positive_int, default=1000)
    ap.add_argument("--latency-ms", type=positive_float, help="a measured latency, to print the MES")
    args = add_common_args(ap, progress=False).parse_args(argv)

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
    with torch.no_grad():
        out = net(torch.randn(1, 3, args.img_size, args.img_size))
    params = count_params(arch, img_size=args.img_size, num_classes=args.num_classes)
    assert params == sum(p.numel() for p in net.parameters())
    macs = count_macs(arch, img_size=args.img_size, num_classes=args.num_classes)
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
