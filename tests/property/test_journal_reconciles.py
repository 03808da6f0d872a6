"""The journal of a period reconciles the liability at its bounds, for any random history (``memory://``).

The histories are those of the liability property test. For random periods ``[start, end)``: the liability at
``end`` is the liability at ``start`` plus the journal's lines (issued, returned, adjustments in and merges in
raise it; redemptions, expiries, claw-backs, adjustments out, arrears repaid and merges out lower it), to the
point and to the fen; the journal's totals by kind are the liability report's movements of the same period; and
the liability the journal holds at each bound is the liability report's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.application.journal import journal_of
from ledger.application.liability import program_liability
from ledger.domain.journal import ACCOUNTS, INSTANT, LIABILITY
from ledger.domain.liability import SIGN
from tests.property.test_liability_reconciles import START, P, _history, step


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(steps=st.lists(step, min_size=1, max_size=40), data=st.data())
def test_the_liability_at_the_end_is_the_start_plus_the_journal(
    steps: list[tuple[str, str, int, int]], data: st.DataObject
) -> None:
    w, moments = _history(steps)
    app = w.app  # type: ignore[attr-defined]
    try:
        now = app.now(P)
        bounds: list[datetime] = sorted(
            {*moments, now + INSTANT, START + timedelta(days=8), now - timedelta(days=2)}
        )
        bounds = [t for t in bounds if START <= t <= now + INSTANT]
        start = data.draw(st.sampled_from(bounds))
        end = data.draw(st.sampled_from([t for t in bounds if t >= start]))
        journal = journal_of(app, P, start, end)
        value = journal.point_value_fen
        # The lines alone carry the liability from one bound to the other, to the point and to the fen.
        points = fen = 0
        for line in journal.lines:
            assert start <= line.at < end
            assert line.points > 0 and line.amount_fen == line.points * value
            sign = 1 if line.credit == LIABILITY else -1
            assert sign == SIGN[line.kind] and LIABILITY in (line.debit, line.credit)
            points += sign * line.points
            fen += sign * line.amount_fen
            assert line.event_id or line.stream_version is None
        assert journal.closing.total == journal.opening.total + points
        assert journal.closing.total * value == journal.opening.total * value + fen
        assert journal.net() == (points, fen)
        # The same figures as the liability report of the period.
        report = program_liability(app, P, end - INSTANT, now, since=start - INSTANT)
        assert report.opening is not None
        assert journal.opening.total == report.opening.total
        assert journal.closing.total == report.closing.total
        period = report.period()
        assert {k: p for k, (p, _) in journal.totals().items() if p} == {k: p for k, p in period.items() if p}
        assert set(journal.totals()) == set(ACCOUNTS)
    finally:
        app.close()
