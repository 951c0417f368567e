"""Identifier minting: short, prefixed, roughly time-ordered."""

from __future__ import annotations

import os
import time


def new_id(prefix: str) -> str:
    """`plan_0192f3a1c0de5b7e9a` : a millisecond timestamp then 40 random bits, sortable by creation."""
    return f"{prefix}_{int(time.time() * 1000):011x}{os.urandom(5).hex()}"
