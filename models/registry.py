"""One registry of model builders, as in timm: ``create_model(name, **kw)``, ``list_models()``."""
from __future__ import annotations

from typing import Callable

_MODELS: dict[str, Callable] = {}


def register_model(fn: Callable) -> Callable:
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, **kwargs):
    """Build a registered model, e.g. ``create_model('efficientformerv2_s0', img_size=64)``.

    Short names (``s0``, ``l``) are accepted for the EfficientFormerV2 variants.
    """
    key = name if name in _MODELS else f"efficientformerv2_{name.lower()}"
    if key not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _MODELS[key](**kwargs)
