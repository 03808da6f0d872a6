"""The read-model tables every backend keeps (the same names and columns on each), and the rebuild prefix."""

from __future__ import annotations

from typing import Final

TABLES: Final = (
    "balance",
    "lot",
    "tier_state",
    "history",
    "standing",
    "identity",
    "due",
    "projection_checkpoint",
)
"""Every read-model table (unprefixed names)."""

RETIRED_TABLES: Final = ("entitlement", "membership")
"""Tables earlier releases kept and no query read (the ``standing`` row holds their facts): opening a store
drops them, and so does dropping a prefix's tables."""


REBUILD_PREFIX: Final = "rb_"
