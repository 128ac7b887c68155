"""Stable pseudo-randomness from content: the same text gives the same number on every machine and run,
whatever order items are processed in (splits, samples, per-item seeds)."""

from __future__ import annotations

import hashlib


def stable_int(text: str) -> int:
    """A 64-bit integer from the text (sha256)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def stable_unit(text: str) -> float:
    """A number in [0, 1) from the text."""
    return stable_int(text) / 2**64
