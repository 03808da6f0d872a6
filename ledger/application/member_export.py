"""The subject-access export (PIPL): everything the ledger holds about one member, as one JSON document.

The profile comes decrypted from the vault, the channel identities as stored (keyed digests: the raw card
numbers and phone numbers are never kept, so they cannot be given back), the events as ReplayMember gives them,
and the balance and tier now. ``ExportMemberData`` and ``ledger export-member`` both answer with
:func:`member_export`.

The export folds the member's stream from the log rather than reading the read models, on purpose: it is an
auditor-grade answer to a legal request, so it is built from the record itself (every event, hash-chained)
and not from a derived copy that a bug, a lagging projection or a tampered row could make disagree with it;
the events are a replay of the stream and the balance and tier come from the writer's state (the same log
folded, with the work due now applied), so they agree with the events listed. It is a rare call, and its cost
(one read of one member's stream) is what ``ReplayMember`` pays too.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ledger.domain.queries import balance_figures, current_tier
from ledger.domain.state import Balances

if TYPE_CHECKING:
    from ledger.application.service import LedgerApp

IDENTITIES_NOTE = (
    "Channel identities are kept only as keyed digests (HMAC-SHA256 of the program, kind and value): the raw card "
    "numbers, phone numbers and open ids are not kept."
)


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _balances(b: Balances) -> dict[str, int]:
    return {"active": b.active, "pending": b.pending, "held": b.held, "arrears": b.arrears}


def member_export(app: LedgerApp, program_id: str, member_id: str) -> dict[str, Any]:
    """The export of one member (NOT_FOUND for a member that was never enrolled)."""
    view = app.view(program_id, member_id)
    state = view.state
    profile = None if state.erased_at is not None else app.personal.load(program_id, member_id)
    if state.erased_at is not None:
        status = "erased"
    else:
        status = "stored" if profile is not None else "none"
    erasure = None
    events: list[dict[str, Any]] = []
    for entry in app.replay(program_id, member_id):
        s = entry.stored
        payload = json.loads(s.payload)
        events.append(
            {
                "version": s.version,
                "event_id": s.event_id,
                "type": s.type,
                "occurred_at": s.occurred_at.isoformat(),
                "recorded_at": s.recorded_at.isoformat(),
                "policy_version": s.policy_version,
                "actor": dict(s.actor),
                "payload": payload,
                "balance_after": _balances(entry.after),
                "tier_after": entry.tier_after,
            }
        )
        if s.type == "MemberErased":
            erasure = {"erased_at": payload["at"], "request_reference": payload["request_reference"]}
    figures = balance_figures(state, view.now)
    return {
        "program_id": program_id,
        "member_id": member_id,
        "exported_at": view.now.isoformat(),
        "enrolled_at": _when(state.enrolled_at),
        "merged_into": state.merged_into,
        "profile_status": status,
        "profile": asdict(profile) if profile is not None else None,
        "erasure": erasure,
        "identities": [
            {"kind": identity.split(":", 1)[0], "digest": identity.split(":", 1)[1]}
            for identity in sorted(set(state.identities))
        ],
        "identities_note": IDENTITIES_NOTE,
        "balance": {
            "active": figures.active,
            "pending": figures.pending,
            "held": figures.held,
            "available": figures.available,
            "arrears": figures.arrears,
            "lifetime_earned": figures.lifetime_earned,
            "lifetime_redeemed": figures.lifetime_redeemed,
            "lifetime_expired": figures.lifetime_expired,
        },
        "tier": current_tier(state, view.policy.policy, view.now),
        "version": state.version,
        "events": events,
    }


def export_document(app: LedgerApp, program_id: str, member_id: str) -> str:
    """:func:`member_export` as JSON text."""
    return json.dumps(member_export(app, program_id, member_id), ensure_ascii=False, indent=2, sort_keys=True)
