"""``python -m nas.search``."""
from nas.search.runner import main

__all__ = ["main"]
