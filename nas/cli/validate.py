"""``python -m nas.validate``."""
from nas.latency.validation import main

__all__ = ["main"]
