"""A household on two replicas sharing one PostgreSQL store: members racing for the last seat through both never
fill more seats than the policy has, and one giver's transfers racing through both never exceed its monthly limit.

The seat count lives on the owner's stream; a join appends there (and on the joining member's stream) at the
version it was decided on, so the replica that finds the owner's stream moved (``WrongExpectedVersion``) decides
again against the new count and answers HOUSEHOLD_FULL. A giver's monthly total lives on its own stream, which
every transfer appends to, so the same holds for the limit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from ledger.application.clock import ManualClock
from ledger.application.writer import Contended
from ledger.bootstrap import Settings, Wired, build
from ledger.domain import commands as cmd
from ledger.domain.errors import Refusal
from policies import dump_policy, little_sprout

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
P = "sandbox"
CANDIDATES = 10

pytestmark = pytest.mark.postgres


def race(replicas: list[Wired], commands: list[tuple[cmd.MemberCommand, str]]) -> list[str]:
    """Run each command on replica ``i % 2`` at once (ABORTED retried with the same key); the outcomes in order."""
    outcomes = [""] * len(commands)
    barrier = threading.Barrier(len(commands))

    def go(i: int) -> None:
        app = replicas[i % 2].app
        command, key = commands[i]
        barrier.wait()
        for _attempt in range(10):
            try:
                app.execute(cmd.Envelope(P, command, key))
                outcomes[i] = "ok"
                return
            except Refusal as r:
                outcomes[i] = r.reason
                return
            except Contended:
                continue
        outcomes[i] = "contended"

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(commands))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def with_replicas(test: Callable[[list[Wired]], None]) -> None:
    from ledger.testing.postgres import fresh_schema, require_postgres

    require_postgres()
    with fresh_schema() as url:
        replicas = [
            build(Settings(store_url=url, reference_program=False), ManualClock(START)) for _ in range(2)
        ]
        try:
            replicas[0].app.create_program(
                P, "Sandbox", dump_policy(little_sprout()), "test", START, "create"
            )
            test(replicas)
        finally:
            for w in replicas:
                w.app.close()


def test_members_racing_for_the_last_seat_through_two_replicas_fill_it_once() -> None:
    def run(replicas: list[Wired]) -> None:
        first = replicas[0].app
        for name in ["owner", "s1", "s2", "s3", "s4"] + [f"c{i}" for i in range(CANDIDATES)]:
            first.enroll(P, name, [("card_number", f"C-{name}")], None, f"enroll-{name}")
        first.execute(cmd.Envelope(P, cmd.CreateHousehold("owner"), "open"))
        # Both replicas join members first, so each holds the owner in its cache before the race, and the first
        # replica's copy is behind the log.
        for n, name in enumerate(["s1", "s2", "s3", "s4"]):
            replicas[n % 2].app.execute(cmd.Envelope(P, cmd.JoinHousehold(name, "owner"), f"join-{name}"))
        outcomes = race(
            replicas, [(cmd.JoinHousehold(f"c{i}", "owner"), f"join-c{i}") for i in range(CANDIDATES)]
        )
        assert sorted(outcomes) == ["HOUSEHOLD_FULL"] * (CANDIDATES - 1) + ["ok"]
        owner = replicas[1].app.view(P, "owner").state
        winner = f"c{outcomes.index('ok')}"
        assert owner.household_members == ["s1", "s2", "s3", "s4", winner]
        for i in range(CANDIDATES):
            state = replicas[i % 2].app.view(P, f"c{i}").state
            assert state.household_of == ("owner" if f"c{i}" == winner else None)
        assert first.verify_member(P, "owner").ok

    with_replicas(run)


def test_one_givers_transfers_racing_through_two_replicas_stay_within_its_monthly_limit() -> None:
    def run(replicas: list[Wired]) -> None:
        first = replicas[0].app
        for name in ["owner", "giver"]:
            first.enroll(P, name, [("card_number", f"C-{name}")], None, f"enroll-{name}")
        first.execute(cmd.Envelope(P, cmd.CreateHousehold("owner"), "open"))
        first.execute(cmd.Envelope(P, cmd.JoinHousehold("giver", "owner"), "join"))
        first.execute(
            cmd.Envelope(P, cmd.AdjustPoints("giver", 50_000, "GOODWILL", "opening", "op1"), "credit")
        )
        replicas[1].app.execute(cmd.Envelope(P, cmd.TransferPoints("giver", "owner", "W", 1_000), "warm"))
        outcomes = race(
            replicas, [(cmd.TransferPoints("giver", "owner", f"T{i}", 2_000), f"t{i}") for i in range(8)]
        )
        # 1,000 given before: 4 more transfers of 2,000 fit under 10,000, the rest find 1,000 left
        assert sorted(outcomes) == ["TRANSFER_LIMIT_REACHED"] * 4 + ["ok"] * 4
        giver = replicas[0].app.view(P, "giver").state
        assert sum(points for _at, points in giver.transfers_out.values()) == 9_000
        assert replicas[1].app.view(P, "owner").state.available == 9_000
        for m in ("giver", "owner"):
            assert first.verify_member(P, m).ok

    with_replicas(run)
