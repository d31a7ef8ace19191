"""Model definitions. ``create_model('efficientformerv2_s0')`` builds a registered network."""
from models.registry import create_model, list_models, register_model
from models import efficientformer_v2
from models.efficientformer_v2 import (BlockConfig, EfficientFormerV2, NetConfig, VARIANTS,
                                 load_timm_state_dict, variant_config)

__all__ = ["create_model", "list_models", "register_model", "BlockConfig", "EfficientFormerV2",
           "NetConfig", "VARIANTS", "load_timm_state_dict", "variant_config", "efficientformer_v2"]
