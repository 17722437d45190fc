"""Transports: where task messages and replies travel (SPEC section 7)."""

from .base import Delivery, Transport
from .memory import MemoryTransport

__all__ = ["Delivery", "MemoryTransport", "Transport"]
