"""``LedgerApp.replay`` folds a member's stream once: balances and tiers equal a fresh fold, across store chunks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger.application import audit
from ledger.application.clock import ManualClock
from ledger.application.service import LedgerApp
from ledger.bootstrap import Settings, build_app, reference_document
from ledger.domain import commands as cmd
from ledger.domain import events as ev
from ledger.domain.decide.context import effective_tier
from ledger.domain.evolve import evolve
from ledger.domain.state import Balances, MemberState
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LedgerApp]:
    monkeypatch.setattr(audit, "REPLAY_CHUNK", 3)  # many chunk boundaries in a short stream
    clock = ManualClock(START)
    app = build_app(
        Settings(store_url=f"sqlite:///{tmp_path}/ledger.db", reference_program=False), clock=clock
    )
    app.create_program("p", "P", reference_document(), "test", START, "c")
    app.enroll("p", "m", [], None, "e")
    for i in range(6):  # enough growth for a tier upgrade
        line = OrderLine("1", "LS-FORMULA-900G", "infant_formula", 1, 200_000)
        app.execute(cmd.Envelope("p", cmd.RecordPurchase("m", f"o{i}", (line,), 200_000), f"buy-{i}"))
    app.advance_clock("p", START + timedelta(days=8), "clock")
    app.execute(cmd.Envelope("p", cmd.AdjustPoints("m", -5, "GOODWILL", "fix", "op"), "adjust"))
    yield app
    app.close()


def test_replay_equals_a_fresh_fold_across_chunks(app: LedgerApp) -> None:
    entries = list(app.replay("p", "m"))
    stored = app.store.read_stream("member-p-m")
    assert (
        [e.stored.version for e in entries] == [s.version for s in stored] == list(range(1, len(stored) + 1))
    )
    assert len(stored) > 3 * 3
    policies = app.program("p").policies
    state = MemberState(program_id="p", member_id="m")
    for entry, s in zip(entries, stored, strict=True):
        before = Balances.of(state)
        evolve(state, ev.decode(s.payload))
        assert (entry.before, entry.after) == (before, Balances.of(state)), s.version
        policy = policies.in_force_at(s.occurred_at).policy
        assert entry.tier_after == effective_tier(state, policy, s.occurred_at), s.version
    assert any(isinstance(e.event, ev.TierChanged) for e in entries), (
        "the history should include a tier change"
    )
    assert len({e.tier_after for e in entries}) > 1


@pytest.mark.parametrize("after_version", [0, 2, 3, 4, 9])
def test_replay_after_version_folds_the_skipped_events(app: LedgerApp, after_version: int) -> None:
    whole = list(app.replay("p", "m"))
    tail = list(app.replay("p", "m", after_version=after_version))
    assert tail == whole[after_version:]


def test_verify_reads_the_stream_once_and_compares_the_final_state(
    app: LedgerApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verify folds the very events whose chain it checked: one read of the stream, and the state it hands the
    projection check is the member's state after the last event (as a fresh fold gives it)."""
    reads: list[str] = []
    real_read = app.store.read_stream

    def counting_read(stream_id: str, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
        reads.append(stream_id)
        return real_read(stream_id, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(app.store, "read_stream", counting_read)
    checked: list[tuple[MemberState, int]] = []
    real_check = app._check_projection
    assert real_check is not None

    def check(state: MemberState, entries: list[audit.ReplayEntry]) -> list[str]:
        checked.append((state, len(entries)))
        return real_check(state, entries)

    monkeypatch.setattr(app, "_check_projection", check)
    report = app.verify_member("p", "m")
    assert report.ok, (report.chain_break, report.mismatches)
    assert reads == ["member-p-m"]
    stored = real_read("member-p-m")
    fresh = MemberState(program_id="p", member_id="m")
    for s in stored:
        evolve(fresh, ev.decode(s.payload))
    [(state, entries)] = checked
    assert entries == len(stored) == report.events
    assert state == fresh
