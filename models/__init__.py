"""Model definitions. ``create_model('efficientformerv2_s0')`` builds a registered network.

The configurations (:mod:`models.configs`: the published variants, :class:`BlockConfig`,
:class:`NetConfig`) are plain data and import without torch, so ``import models.configs`` (which runs this
file first) stays light: the networks themselves (:mod:`models.efficientformer_v2`, which needs torch) are
loaded on first use, when one of their names is read from this package or a model is created.
"""
import importlib

from models.configs import VARIANTS, BlockConfig, NetConfig, variant_config
from models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model", "BlockConfig", "EfficientFormerV2",
           "NetConfig", "VARIANTS", "load_timm_state_dict", "variant_config", "efficientformer_v2"]

#: names this package exports from :mod:`models.efficientformer_v2`, which is imported when one is first read
_NETWORK_NAMES = ("EfficientFormerV2", "load_timm_state_dict")


def __getattr__(name: str):
    if name == "efficientformer_v2" or name in _NETWORK_NAMES:
        module = importlib.import_module("models.efficientformer_v2")
        return module if name == "efficientformer_v2" else getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
