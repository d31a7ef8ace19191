"""argparse types that refuse impossible values with a message, instead of a traceback later."""
from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = ["positive_int", "nonnegative_int", "positive_float", "fraction"]


def _checked(convert: Callable[[str], float], ok: Callable[[float], bool], what: str, rule: str):
    def parse(text: str):
        try:
            v = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return v
    parse.__name__ = f"{rule} {what}"
    return parse


positive_int = _checked(int, lambda v: v >= 1, "a whole number", "at least 1")
nonnegative_int = _checked(int, lambda v: v >= 0, "a whole number", "0 or more")
positive_float = _checked(float, lambda v: math.isfinite(v) and v > 0, "a number", "a finite number above 0")
fraction = _checked(float, lambda v: math.isfinite(v) and 0 <= v <= 1, "a number", "between 0 and 1")
