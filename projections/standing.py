"""A member's standing in the read models: the facts GetTierState, ListEntitlements, ListExchanges,
GetHousehold and LookupMember read.

:func:`standing_row` derives one row per member from its state after a write (whatever the events were), and
:func:`standing_state` turns the row back into a :class:`~ledger.domain.state.MemberState` that holds exactly
those facts, so the readers call the same domain functions the writer's answers come from
(:func:`ledger.domain.standing.tier_standing`, :func:`~ledger.domain.standing.entitlement_use`,
:func:`ledger.domain.queries.current_tier`). Time-dependent figures (the growth and referrals in the window
*now*, an entitlement's use *this month*, the paid plans in force) are computed at query time from the stored
facts: the row holds the growth entries, referral times and every use with its time, never a figure as of
the write.

The document is compact JSON: times are integer microseconds since the Unix epoch (UTC), collections are
lists of positional arrays in the state's own order (memberships and entitlements in the order the fold added
them, which breaks ties among equal purchase times as the writer's answer does), so equal states give equal
rows.

What the rebuilt state holds: version, enrolment time, merge target, tier and its history, review and
downgrade notice, overrides (their history and the current one), last purchase, growth entries, referrals,
memberships, entitlements (each use's time and quantity; not its order or store, nor the grant's revoke-on
list), points-mall exchanges (not the lots they debited, their stock stream or policy version) and the
household facts (the owner, the members, the seats, each transfer given with its time and points). Everything
else (lots, holds, orders, ...) is empty: the answers that need those read other tables.

Rows written before the exchanges and household facts were added lack those keys: :func:`standing_state`
raises :class:`StandingIncomplete` when an answer needs one of them (the reader then asks the writer) until
``ledger rebuild-projections`` writes the rows again.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

from ledger.domain.state import (
    DowngradeNotice,
    Entitlement,
    Exchange,
    GrowthEntry,
    Membership,
    MemberState,
    TierOverride,
    Use,
)

EXCHANGES: Final = "exchanges"
"""The document key of the points-mall exchanges (ListExchanges needs it)."""
HOUSEHOLD: Final = "household"
"""The document key of the household facts (GetHousehold needs it)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class StandingIncomplete(LookupError):
    """The row predates facts an answer needs (written before they were part of the document)."""


class StandingRow(NamedTuple):
    """The facts a member's tier state, entitlements and look-up are computed from."""

    program_id: str
    member_id: str
    version: int
    document: str
    """The facts as compact JSON (see the module docstring)."""


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch (as :func:`projections.codec.to_micros`, which imports the rows)."""
    return (value - _EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _t(value: datetime | None) -> int | None:
    return None if value is None else to_micros(value)


def _d(value: int | None) -> datetime | None:
    return None if value is None else from_micros(value)


def _dt(value: int) -> datetime:
    return from_micros(value)


def _override(o: TierOverride) -> list[Any]:
    return [o.tier, o.kind, to_micros(o.starts_at), to_micros(o.ends_at), o.reason, o.operator_id]


def _override_of(v: list[Any]) -> TierOverride:
    return TierOverride(v[0], v[1], _dt(v[2]), _dt(v[3]), v[4], v[5])


def _document(s: MemberState) -> dict[str, Any]:
    notice = s.downgrade_notice
    current = s.override
    return {
        "enrolled_at": _t(s.enrolled_at),
        "merged_into": s.merged_into,
        "tier": s.tier,
        "tier_since": _t(s.tier_since),
        "tier_history": [[to_micros(at), code] for at, code in s.tier_history],
        "next_review_at": _t(s.next_review_at),
        "notice": None
        if notice is None
        else [to_micros(notice.issued_at), to_micros(notice.downgrade_at), notice.target_tier],
        "overrides": [_override(o) for o in s.override_history],
        "override": None if current is None else _override(current),
        "last_purchase_at": _t(s.last_purchase_at),
        "growth": [[to_micros(g.at), g.amount] for g in s.growth],
        "referrals": [to_micros(r) for r in s.referrals],
        "memberships": [
            [
                m.membership_id,
                m.plan,
                m.price_fen,
                to_micros(m.purchased_at),
                to_micros(m.term_start),
                to_micros(m.term_end),
                m.status,
                m.benefits_granted,
            ]
            for m in s.memberships.values()
        ],
        "entitlements": [
            [
                e.entitlement_id,
                e.benefit,
                e.name,
                e.kind,
                e.value_fen,
                to_micros(e.valid_from),
                to_micros(e.valid_until),
                e.quota_total,
                e.quota_per_month,
                e.source,
                to_micros(e.granted_at),
                [[to_micros(u.at), u.quantity] for u in e.uses],
                _t(e.revoked_at),
                e.revoked_reason,
            ]
            for e in s.entitlements.values()
        ],
        EXCHANGES: [
            [
                x.exchange_id,
                x.reward_id,
                x.reward_name,
                to_micros(x.at),
                x.points,
                x.cash_fen,
                x.entitlement_id,
                _t(x.cancelled_at),
                x.cancel_reason,
            ]
            for x in s.exchanges.values()
        ],
        HOUSEHOLD: [
            s.household_of,
            s.household_members,
            s.household_max,
            [[transfer_id, to_micros(at), points] for transfer_id, (at, points) in s.transfers_out.items()],
        ],
    }


def standing_row(state: MemberState) -> StandingRow:
    """The member's standing row, from its state after a write."""
    text = json.dumps(_document(state), separators=(",", ":"), ensure_ascii=False)
    return StandingRow(state.program_id, state.member_id, state.version, text)


def standing_state(row: StandingRow, needs: Collection[str] = ()) -> MemberState:
    """A state holding the facts of ``row`` (see the module docstring for what it leaves empty). Raises
    :class:`StandingIncomplete` when the row lacks one of the document keys in ``needs`` (:data:`EXCHANGES`,
    :data:`HOUSEHOLD`)."""
    doc = json.loads(row.document)
    missing = [key for key in needs if key not in doc]
    if missing:
        raise StandingIncomplete(f"the standing row predates {', '.join(missing)}")
    s = MemberState(program_id=row.program_id, member_id=row.member_id, version=row.version)
    s.enrolled_at = _d(doc["enrolled_at"])
    s.merged_into = doc["merged_into"]
    s.tier = doc["tier"]
    s.tier_since = _d(doc["tier_since"])
    s.tier_history = [(_dt(at), code) for at, code in doc["tier_history"]]
    s.next_review_at = _d(doc["next_review_at"])
    notice = doc["notice"]
    s.downgrade_notice = (
        None if notice is None else DowngradeNotice(_dt(notice[0]), _dt(notice[1]), notice[2])
    )
    s.override_history = [_override_of(v) for v in doc["overrides"]]
    s.override = None if doc["override"] is None else _override_of(doc["override"])
    s.last_purchase_at = _d(doc["last_purchase_at"])
    s.growth = [GrowthEntry(_dt(at), amount) for at, amount in doc["growth"]]
    s.referrals = [_dt(r) for r in doc["referrals"]]
    for v in doc["memberships"]:
        s.memberships[v[0]] = Membership(
            membership_id=v[0],
            plan=v[1],
            price_fen=v[2],
            purchased_at=_dt(v[3]),
            term_start=_dt(v[4]),
            term_end=_dt(v[5]),
            status=v[6],
            benefits_granted=v[7],
        )
    for v in doc["entitlements"]:
        s.entitlements[v[0]] = Entitlement(
            entitlement_id=v[0],
            benefit=v[1],
            name=v[2],
            kind=v[3],
            value_fen=v[4],
            valid_from=_dt(v[5]),
            valid_until=_dt(v[6]),
            quota_total=v[7],
            quota_per_month=v[8],
            source=v[9],
            revoke_on=(),
            granted_at=_dt(v[10]),
            uses=[Use(_dt(at), quantity, "", "") for at, quantity in v[11]],
            revoked_at=_d(v[12]),
            revoked_reason=v[13],
        )
    _exchanges_and_household(s, doc)
    return s


def _exchanges_and_household(s: MemberState, doc: dict[str, Any]) -> None:
    """Fill the exchanges and household facts of ``s`` from ``doc`` (left empty on a row that predates them)."""
    for v in doc.get(EXCHANGES, ()):
        s.exchanges[v[0]] = Exchange(
            exchange_id=v[0],
            reward_id=v[1],
            reward_name=v[2],
            at=_dt(v[3]),
            points=v[4],
            cash_fen=v[5],
            debits=[],
            entitlement_id=v[6],
            stock_stream=None,
            policy_version=0,
            cancelled_at=_d(v[7]),
            cancel_reason=v[8],
        )
    household = doc.get(HOUSEHOLD)
    if household is not None:
        s.household_of, members, s.household_max, given = household
        s.household_members = list(members)
        s.transfers_out = {transfer_id: (_dt(at), points) for transfer_id, at, points in given}
