"""``python -m nas.calibrate``."""
from nas.latency.calibrate import main

__all__ = ["main"]
