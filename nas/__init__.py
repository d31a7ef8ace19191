"""Hardware-aware NAS for EfficientFormerV2-style mobile vision transformers.

Subpackages, from the bottom layer up (each imports only from the layers below it; ``lint-imports``
checks this): ``core``, ``space``, ``data``, ``supernet``, ``training`` / ``latency`` / ``export``,
``search``, ``cli``. ``profilers`` (a sibling top-level package) sits above ``space``.
"""
from nas.core.version import __version__

__all__ = ["__version__"]
