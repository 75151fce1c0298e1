"""Counters of what the client did, for the sync summary and for tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class ClientStats:
    """What went over the wire. ``requests`` counts attempts, retries included."""

    requests: int = 0
    pages: int = 0
    pages_with_data: int = 0
    records: int = 0
    throttled: int = 0
    retries: int = 0
    throttle_wait_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if f.name[0] != "_"}
