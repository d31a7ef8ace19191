"""The tool's name and version, one owner: the version is the installed package's metadata."""
from __future__ import annotations

from importlib import metadata

__all__ = ["TOOL", "__version__"]

TOOL = "effv2-nas"

try:
    __version__ = metadata.version("effv2-nas")
except metadata.PackageNotFoundError:     # running from a checkout that was never installed
    __version__ = "0+unknown"
