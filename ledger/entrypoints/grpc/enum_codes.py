"""The wire's enums and the ledger's names for them: channels, identity kinds, lot sources, entitlement,
membership and override kinds and statuses, audit problem kinds."""

from __future__ import annotations

from collections.abc import Mapping

from loyalty.v1 import audit_pb2, common_pb2, member_pb2

CHANNELS: Mapping[int, str] = {
    common_pb2.CHANNEL_UNSPECIFIED: "",
    common_pb2.CHANNEL_POS: "pos",
    common_pb2.CHANNEL_WEB_MALL: "web_mall",
    common_pb2.CHANNEL_MINI_PROGRAM: "mini_program",
    common_pb2.CHANNEL_APP: "app",
    common_pb2.CHANNEL_OPERATOR_CONSOLE: "operator_console",
    common_pb2.CHANNEL_SYSTEM: "system",
}
CHANNEL_CODES: Mapping[str, int] = {v: k for k, v in CHANNELS.items() if v}

IDENTITY_KINDS: Mapping[int, str] = {
    common_pb2.IDENTITY_KIND_CARD_NUMBER: "card_number",
    common_pb2.IDENTITY_KIND_PHONE_HASH: "phone_hash",
    common_pb2.IDENTITY_KIND_OPEN_ID: "open_id",
    common_pb2.IDENTITY_KIND_UNION_ID: "union_id",
    common_pb2.IDENTITY_KIND_EXTERNAL_ID: "external_id",
}

LOT_SOURCES: Mapping[str, member_pb2.LotSource.ValueType] = {
    "purchase": member_pb2.LOT_SOURCE_PURCHASE,
    "behaviour": member_pb2.LOT_SOURCE_BEHAVIOUR,
    "adjustment": member_pb2.LOT_SOURCE_ADJUSTMENT,
    "refund_return": member_pb2.LOT_SOURCE_REFUND_RETURN,
    "merge": member_pb2.LOT_SOURCE_MERGE,
    "imported": member_pb2.LOT_SOURCE_IMPORTED,
    "transfer": member_pb2.LOT_SOURCE_TRANSFER,
}

ENTITLEMENT_STATUSES: Mapping[str, member_pb2.EntitlementStatus.ValueType] = {
    "available": member_pb2.ENTITLEMENT_STATUS_AVAILABLE,
    "used_up": member_pb2.ENTITLEMENT_STATUS_USED_UP,
    "expired": member_pb2.ENTITLEMENT_STATUS_EXPIRED,
    "revoked": member_pb2.ENTITLEMENT_STATUS_REVOKED,
}

MEMBERSHIP_STATUSES: Mapping[str, member_pb2.PaidMembershipStatus.ValueType] = {
    "active": member_pb2.PAID_MEMBERSHIP_STATUS_ACTIVE,
    "cancelled": member_pb2.PAID_MEMBERSHIP_STATUS_CANCELLED,
    "lapsed": member_pb2.PAID_MEMBERSHIP_STATUS_LAPSED,
}

OVERRIDE_KINDS: Mapping[str, member_pb2.TierOverrideKind.ValueType] = {
    "temporary_upgrade": member_pb2.TIER_OVERRIDE_KIND_TEMPORARY_UPGRADE,
    "override": member_pb2.TIER_OVERRIDE_KIND_OVERRIDE,
}
OVERRIDE_KIND_NAMES: Mapping[int, str] = {v: k for k, v in OVERRIDE_KINDS.items()}

PROBLEM_KINDS: Mapping[str, audit_pb2.ProblemKind.ValueType] = {
    "hash": audit_pb2.PROBLEM_KIND_HASH_MISMATCH,
    "prev": audit_pb2.PROBLEM_KIND_CHAIN_BROKEN,
    "version": audit_pb2.PROBLEM_KIND_VERSION_GAP,
    "head": audit_pb2.PROBLEM_KIND_VERSION_GAP,
}
