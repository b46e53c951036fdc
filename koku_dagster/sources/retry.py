"""Capped exponential back-off, shared by parked events and provider operations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Backoff:
    """``base_seconds * 2**(attempts-1)``, never more than ``cap_seconds`` (tests make both small)."""

    base_seconds: float = 5.0
    cap_seconds: float = 600.0

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.cap_seconds, self.base_seconds * 2 ** min(32, max(0, attempts - 1))))
