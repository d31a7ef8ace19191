"""What a setting may hold: one rule per kind of value, shared by every command line and every configuration.

A :class:`Rule` checks a value two ways: as an argparse ``type`` (``Rule.arg``, or the rule itself: it is
callable), which turns ``"--batch-size 0"`` into a parser error, and as a Python value
(:meth:`Rule.check`), which the configuration dataclasses call on their own fields, so
``SearchConfig(batch_size=0)`` is refused with the same words. A dataclass declares a field's rule with
:func:`setting` and checks them all with :func:`check_settings`; a parser takes the same rule and default
with :func:`add_setting`. One rule, one message, wherever the value comes from.

    @dataclass(frozen=True)
    class MyConfig:
        batch_size: int = setting(64, POSITIVE_INT, help="images per batch")

        def __post_init__(self):
            check_settings(self)

    add_setting(ap, "--batch-size", MyConfig, "batch_size")
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from nas.core.errors import UserError

__all__ = ["ConfigError", "Rule", "WHOLE", "POSITIVE_INT", "NONNEGATIVE_INT", "POSITIVE_FLOAT",
           "NONNEGATIVE_FLOAT", "FRACTION", "IMG_SIZE", "FLAG", "TEXT", "STRINGS", "one_of", "letters", "int_range",
           "setting", "rule_of", "check_settings", "add_setting"]


class ConfigError(UserError, ValueError):
    """A setting that cannot work; the message names the setting and the values it accepts."""


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


@dataclass(frozen=True)
class Rule:
    """A kind of value: ``what`` it is (``"a whole number"``) and the ``rule`` it obeys (``"at least 1"``).

    ``parse`` turns command-line text into a value (ValueError when it cannot); ``typed`` says whether a
    Python value has the right type (and may convert it: an int where a float is wanted); ``ok`` whether
    it obeys the rule."""
    what: str
    rule: str
    parse: Callable[[str], Any]
    typed: Callable[[Any], bool]
    ok: Callable[[Any], bool] = lambda v: True
    convert: Callable[[Any], Any] = lambda v: v

    @property
    def __name__(self) -> str:                  # argparse names the type in some messages
        return f"{self.what} ({self.rule})" if self.rule else self.what

    def arg(self, text: str):
        """The value of command-line ``text``; ``argparse.ArgumentTypeError`` saying what was expected."""
        try:
            v = self.parse(text)
        except (ValueError, TypeError, KeyError):
            raise argparse.ArgumentTypeError(f"expected {self.what}, got {text!r}") from None
        if not self.ok(v):
            raise argparse.ArgumentTypeError(f"must be {self.rule}, got {text}")
        return v

    __call__ = arg

    def check(self, name: str, value, error: type[UserError] = ConfigError):
        """``value`` (converted where the rule converts) when it is of this kind and obeys the rule;
        ``error`` naming ``name`` otherwise."""
        if not self.typed(value):
            raise error(f"{name} must be {self.what}, got {value!r}")
        value = self.convert(value)
        if not self.ok(value):
            raise error(f"{name} must be {self.rule}, got {value!r}")
        return value


def _parse_int(text: str) -> int:
    return int(str(text).strip())


def _parse_float(text: str) -> float:
    v = float(str(text).strip())
    if not math.isfinite(v):
        raise ValueError
    return v


WHOLE = Rule("a whole number", "", _parse_int, _is_int, convert=int)
POSITIVE_INT = Rule("a whole number", "at least 1", _parse_int, _is_int, lambda v: v >= 1, int)
NONNEGATIVE_INT = Rule("a whole number", "0 or more", _parse_int, _is_int, lambda v: v >= 0, int)
POSITIVE_FLOAT = Rule("a finite number", "above 0", _parse_float, _is_number, lambda v: v > 0, float)
NONNEGATIVE_FLOAT = Rule("a finite number", "0 or more", _parse_float, _is_number, lambda v: v >= 0, float)
FRACTION = Rule("a finite number", "between 0 and 1", _parse_float, _is_number, lambda v: 0 <= v <= 1, float)
IMG_SIZE = Rule("a whole number", "a positive multiple of 32", _parse_int, _is_int,
                lambda v: v >= 32 and v % 32 == 0, int)
FLAG = Rule("true or false", "", lambda t: {"true": True, "false": False}[str(t).lower()],
            lambda v: isinstance(v, bool))
TEXT = Rule("a non-empty string", "", str, lambda v: isinstance(v, str) and bool(v))
STRINGS = Rule("a list of non-empty strings", "", lambda t: tuple(x.strip() for x in str(t).split(",") if x.strip()),
               lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) and x for x in v), convert=tuple)


def one_of(choices: Iterable[str]) -> Rule:
    """A string among ``choices``."""
    choices = tuple(choices)
    listed = ", ".join(choices)
    return Rule("a string", f"one of {listed}", str, lambda v: isinstance(v, str), lambda v: v in choices)


def letters(allowed: str, what: str) -> Rule:
    """A non-empty string of distinct letters from ``allowed`` (``what`` they stand for, for the message)."""
    return Rule("a string", f"one or more distinct letters of {allowed} ({what})", str,
                lambda v: isinstance(v, str),
                lambda v: bool(v) and set(v) <= set(allowed) and len(set(v)) == len(v))


def int_range(lo: int, hi: int) -> Rule:
    """A whole number from ``lo`` to ``hi``."""
    return Rule("a whole number", f"between {lo} and {hi}", _parse_int, _is_int, lambda v: lo <= v <= hi, int)


def setting(default, rule: Rule, *, optional: bool = False, help: str | None = None, flag: str | None = None):
    """A dataclass field whose values obey ``rule`` (None also allowed when ``optional``). ``flag``: the
    command-line flag that sets it, for configurations whose command lines are built from their fields."""
    return dataclasses.field(default=default,
                             metadata={"rule": rule, "optional": optional, "help": help, "flag": flag})


def rule_of(cls, name: str) -> Rule:
    """The rule that field ``name`` of dataclass ``cls`` declares with :func:`setting`."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return f.metadata["rule"]


def check_settings(obj, error: type[UserError] = ConfigError) -> None:
    """Check every field of dataclass instance ``obj`` that declares a rule (converting in place, e.g. an
    int given for a float); ``error`` naming the first field that breaks its rule."""
    for f in dataclasses.fields(obj):
        rule = f.metadata.get("rule")
        if rule is None:
            continue
        value = getattr(obj, f.name)
        if value is None and f.metadata.get("optional"):
            continue
        object.__setattr__(obj, f.name, rule.check(f.name, value, error))


def add_setting(ap, flag: str, cls, name: str, **kw) -> argparse.Action:
    """``ap.add_argument(flag, ...)`` for field ``name`` of dataclass ``cls``: its rule as the type, its
    default (unless ``default`` is given) and its help (unless ``help`` is given)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    rule = f.metadata["rule"]
    kw.setdefault("default", f.default if f.default is not dataclasses.MISSING else None)
    kw.setdefault("help", f.metadata.get("help"))
    if rule is not FLAG and "choices" not in kw:
        kw.setdefault("metavar", flag.lstrip("-").upper().replace("-", "_"))
    if rule is FLAG:
        kw.setdefault("action", argparse.BooleanOptionalAction)
        return ap.add_argument(flag, dest=name, **kw)
    return ap.add_argument(flag, dest=name, type=rule, **kw)
