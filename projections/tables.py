"""The read-model tables every backend keeps (the same names and columns on each), and the rebuild prefix."""

from __future__ import annotations

from typing import Final

TABLES: Final = (
    "balance",
    "lot",
    "tier_state",
    "entitlement",
    "membership",
    "history",
    "standing",
    "identity",
    "due",
    "projection_checkpoint",
)
"""Every read-model table (unprefixed names)."""


REBUILD_PREFIX: Final = "rb_"
