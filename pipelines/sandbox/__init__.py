"""Local sandbox of the Micrometrics Experience API (see README.md in this folder)."""

from .server import Sandbox
from .store import Store

__all__ = ["Sandbox", "Store"]
