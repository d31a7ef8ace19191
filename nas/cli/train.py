"""``python -m nas.train_supernet``."""
from nas.training.trainer import main

__all__ = ["main"]
