"""The slimmable supernet: elastic operations (:mod:`.elastic`), the supernet over a search space
(:mod:`.supernet`), subnet evaluation with BatchNorm recalibration (:mod:`.evaluate`), checkpoints
(:mod:`.checkpoint`) and warm starts from published weights (:mod:`.pretrained`). Re-exported flat."""
from nas.supernet.checkpoint import CheckpointError, load_checkpoint, load_supernet, safe_load
from nas.supernet.evaluate import SubnetEvaluator, accuracy, recalibrate_bn
from nas.supernet.pretrained import PretrainedError, load_pretrained
from nas.supernet.supernet import SlimmableSupernet

__all__ = ["CheckpointError", "load_checkpoint", "load_supernet", "safe_load", "SubnetEvaluator", "accuracy",
           "recalibrate_bn", "SlimmableSupernet", "PretrainedError", "load_pretrained"]
