"""One registry of model builders, as in timm: ``create_model(name, **kw)``, ``list_models()``.

The modules in :data:`BUILDER_MODULES` register their builders when imported; the registry imports them
the first time it is read, so creating a model never depends on what happened to be imported before.
"""
from __future__ import annotations

import importlib
from typing import Callable

_MODELS: dict[str, Callable] = {}

#: modules whose import registers model builders (they need torch, so they are imported on first use)
BUILDER_MODULES = ("models.efficientformer_v2",)


def register_model(fn: Callable) -> Callable:
    _MODELS[fn.__name__] = fn
    return fn


def _load_builders() -> None:
    for module in BUILDER_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    _load_builders()
    return sorted(_MODELS)


def create_model(name: str, **kwargs):
    """Build a registered model, e.g. ``create_model('efficientformerv2_s0', img_size=64)``.

    Short names (``s0``, ``l``) are accepted for the EfficientFormerV2 variants.
    """
    _load_builders()
    key = name if name in _MODELS else f"efficientformerv2_{name.lower()}"
    if key not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}")
    return _MODELS[key](**kwargs)
