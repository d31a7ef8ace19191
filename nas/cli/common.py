"""Arguments shared by the command lines of this package (beyond :func:`nas.core.cli.add_common_args`)."""
from __future__ import annotations

import argparse

from nas.core.cli import ArgumentParser, add_common_args, positive_int
from nas.core.values import WHOLE

__all__ = ["network_parser", "doc_summary"]


def doc_summary(doc: str | None) -> str:
    """The first paragraph of a module docstring (a parser's description)."""
    return (doc or "").strip().split("\n\n")[0]


def network_parser(prog: str, doc: str | None, n: int, n_help: str, seed: int, out_dir: str) -> argparse.ArgumentParser:
    """The command line of the commands that measure whole networks on a table's runtime
    (``nas.calibrate``, ``nas.validate``)."""
    ap = ArgumentParser(prog=prog, description=doc_summary(doc))
    ap.add_argument("--target", default="local-cpu", help="device name or table CSV path (default: local-cpu)")
    ap.add_argument("--runtime", help="runtime of the table when the device has several")
    ap.add_argument("--n", type=positive_int, default=n, help=n_help)
    ap.add_argument("--seed", type=WHOLE, default=seed)
    ap.add_argument("--threads", type=positive_int, help="override the device's thread count")
    ap.add_argument("--out-dir", default=out_dir)
    ap.add_argument("--allow-foreign-table", action="store_true",
                    help="use a local device's table measured on another host anyway (with a loud warning)")
    return add_common_args(ap)
