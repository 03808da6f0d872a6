"""Deciding one request of a group: a member command staged on the streams it changes, a quote, a peek.

Each command is decided on the member's state brought up to now (its due work applied first) under the
policy in force at its business time, and its events are applied to the group's staged streams at once, so
the next command of the group for the same member sees them. The kinds that reach other streams are staged
here too: a merge (the source member), a household command (:mod:`household_staging`), an exchange (the
reward's stock, :mod:`stock_staging`), an award naming an invitee, growth counted to a household's owner.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ledger.application.household_staging import count_household_growth, stage_household
from ledger.application.member_staging import GroupStaging, StagedMember
from ledger.application.results import CommandResult
from ledger.application.write_requests import Peek, PeekResult, Quote
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide import Context, decide, household
from ledger.domain.decide.earning import names_an_invitee, quote
from ledger.domain.decide.members import merge
from ledger.domain.errors import NotFound
from ledger.domain.state import Balances
from policies import OrderEarning

Staged = tuple[list[ev.MemberEvent], int, dict[str, Any]]
"""A command's own events, where they start in the member's staged events, and what its answer carries besides."""


def stage_quote(group: GroupStaging, req: Quote) -> OrderEarning:
    s = group.load(req.program_id, req.command.member_id)
    ctx = group.context(s, req.occurred_at)
    if not s.state.enrolled:
        raise NotFound("member", req.command.member_id)
    group.catch_up(s, ctx)
    return quote(req.command, s.state, ctx)


def stage_peek(group: GroupStaging, req: Peek) -> PeekResult:
    s = group.load(req.program_id, req.member_id)
    ctx = group.context(s, None)
    if not s.state.enrolled:
        raise NotFound("member", req.member_id)
    group.catch_up(s, ctx)
    return PeekResult(s.state.clone(), ctx.now)


def stage_command(
    group: GroupStaging, req: cmd.Envelope, *, with_state: bool = False
) -> tuple[CommandResult, list[bytes] | None]:
    """Decide one command and apply its events; the result, and the payloads of its events as encoded for
    the log (None if they are not at hand) so that the recorded answer does not encode them again."""
    command = req.command
    if isinstance(command, cmd.AdjustStock):
        return group.stock.adjust(req, command, group.programs), None
    s = group.load(req.program_id, command.member_id)
    ctx = group.context(s, req.occurred_at)
    before = len(s.events)
    caught_up = group.catch_up(s, ctx)
    if isinstance(command, cmd.EnrollMember | cmd.ImportMember):
        group.check_identities(req.program_id, command)
    if isinstance(command, cmd.MergeMembers):
        produced, start, extra = _stage_merge(group, req, command, s, ctx)
    elif isinstance(command, cmd.JoinHousehold | cmd.LeaveHousehold | cmd.TransferPoints):
        produced, extra = stage_household(group, req, command, s, ctx)
        start = len(s.events) - len(produced)
    elif isinstance(command, cmd.ExchangePoints | cmd.CancelExchange):
        produced, start, extra = _stage_exchange(group, req, command, s, ctx)
    elif isinstance(command, cmd.Tick):
        if not s.state.enrolled:
            raise NotFound("member", command.member_id)
        produced, start, extra = caught_up, before, {}
    else:
        produced, start, extra = _stage_member_command(group, req, s, ctx)
    return _result(req, s, produced, start, extra, ctx, with_state)


def _stage_merge(
    group: GroupStaging, req: cmd.Envelope, command: cmd.MergeMembers, s: StagedMember, ctx: Context
) -> Staged:
    """A merge: the source's events on its stream, the survivor's on its own; the source's cards find the
    survivor from now on."""
    source = group.load(req.program_id, command.source_member_id)
    group.catch_up(source, group.context(source, req.occurred_at))
    target_events, source_events = merge(command, s.state, source.state, ctx)
    group.apply(source, source_events, req, ctx)
    start = len(s.events)
    group.apply(s, target_events, req, ctx)
    group.claim(s, source.state.identities)
    return target_events, start, {}


def _stage_exchange(
    group: GroupStaging,
    req: cmd.Envelope,
    command: cmd.ExchangePoints | cmd.CancelExchange,
    s: StagedMember,
    ctx: Context,
) -> Staged:
    """An exchange or its cancellation: decided with the reward's stock as the group has it, which it moves."""
    stock = group.stock.of(req.program_id, command, s.state)
    if stock is not None:
        ctx = replace(ctx, stock=stock.state)
    produced = decide(command, s.state, ctx)
    start = len(s.events)
    group.apply(s, produced, req, ctx)
    group.stock.follow(req, s.member_id, produced, ctx.now)
    return produced, start, {}


def _stage_member_command(group: GroupStaging, req: cmd.Envelope, s: StagedMember, ctx: Context) -> Staged:
    """Any other command: decided on the member's state alone (an award naming an invitee sees the invitee's);
    growth it earns is counted to the household's owner too when the policy says so."""
    command = req.command
    if isinstance(command, cmd.AwardPoints) and names_an_invitee(command, ctx):
        invitee = group.load(req.program_id, command.reference)
        ctx = replace(ctx, invitee=invitee.state if invitee.state.enrolled else None)
    produced = decide(command, s.state, ctx)
    if isinstance(command, cmd.EnrollMember | cmd.ImportMember):
        group.claim(s, command.identities)
    start = len(s.events)
    growth_before = len(s.state.growth)
    group.apply(s, produced, req, ctx)
    if len(s.state.growth) > growth_before and household.counts_growth_to_owner(s.state, ctx):
        count_household_growth(group, req, s, s.state.growth[growth_before:])
    return produced, start, {}


def _result(
    req: cmd.Envelope,
    s: StagedMember,
    produced: list[ev.MemberEvent],
    start: int,
    extra: dict[str, Any],
    ctx: Context,
    with_state: bool,
) -> tuple[CommandResult, list[bytes] | None]:
    applied = s.events[start:]
    payloads: list[bytes] | None = [a[1].payload for a in applied]
    if len(applied) != len(produced) or any(a[0] is not e for a, e in zip(applied, produced, strict=False)):
        payloads = None
    result = CommandResult(
        program_id=req.program_id,
        member_id=req.command.member_id,
        events=tuple(produced),
        version=s.state.version,
        balance=Balances.of(s.state),
        recorded_at=ctx.now,
        extra=extra,
        state_after=s.state.clone() if with_state else None,
    )
    return result, payloads
