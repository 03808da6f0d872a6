"""What the write path pays for the spans of its phases: CPU per write with the writer's ``on_wait`` hook unset
(traces off), set to a hook that records the phases and drops them (the writer's own share), and with the real
tracing layer inside a recording span (what a traced call adds: the wait span and three phase spans).

Run as ``python -m bench.trace_phases [--writes N] [--store memory|sqlite]`` (under a minute). One thread, so
every write is a group of one: the writer's per-group cost is all on that write (the worst case). CPU time of
this process (``time.process_time``: the caller and the writer thread) per write, the median of 15 blocks of
``N`` writes per variant, the variants taking turns block by block (members grow as they buy: the turns share
that drift) over 2,000 members. It prints a table; nothing is written. ``docs/operations.md`` (Traces) quotes a run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

from ledger.application.clock import ManualClock
from ledger.application.writer import GroupPhases, PhaseSink
from ledger.bootstrap import Settings, Wired, build, reference_document
from ledger.domain import commands as cmd
from policies import OrderLine

START = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
PROGRAM = "bench"
MEMBERS = 2_000
ROUNDS = 15


def _dropping(requests: int, queued: int) -> AbstractContextManager[PhaseSink | None]:
    @contextmanager
    def waiting() -> Iterator[PhaseSink]:
        def drop(phases: GroupPhases) -> None:
            del phases

        yield drop

    return waiting()


def _round(wired: Wired, writes: int, first: int, around: Callable[[], AbstractContextManager[Any]]) -> float:
    line = OrderLine("l1", "SKU-TOY", "toys", 1, 100_00)
    started = time.process_time()
    for n in range(first, first + writes):
        with around():
            member = f"m{n % MEMBERS}"
            wired.app.execute(
                cmd.Envelope(PROGRAM, cmd.RecordPurchase(member, f"O{n}", (line,), 100_00), f"k{n}")
            )
    return (time.process_time() - started) / writes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200, help="writes per block (default 200)")
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    args = parser.parse_args()

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from ledger.entrypoints.grpc.tracing import Tracing

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Discard()))
    tracer = provider.get_tracer("bench")
    tracing = Tracing(tracer)

    with tempfile.TemporaryDirectory() as folder:
        url = "memory://" if args.store == "memory" else f"sqlite:///{folder}/ledger.db"
        wired = build(Settings(store_url=url, synchronous="OFF", reference_program=False), ManualClock(START))
        wired.app.create_program(PROGRAM, "Bench", reference_document(), "test", START, "create")
        for m in range(MEMBERS):
            wired.app.enroll(PROGRAM, f"m{m}", [], None, f"e{m}")
        variants: dict[str, tuple[Any, Callable[[], AbstractContextManager[Any]]]] = {
            "hook unset (traces off)": (None, nullcontext),
            "hook set, phases recorded and dropped": (_dropping, nullcontext),
            "tracing layer in a recording span": (
                tracing.writer_wait,
                lambda: tracer.start_as_current_span("call"),
            ),
        }
        results: dict[str, list[float]] = {name: [] for name in variants}
        first = 0
        _round(wired, args.writes, first, nullcontext)  # warm up the cache and the store
        first += args.writes
        for _ in range(ROUNDS):
            for name, (hook, around) in variants.items():
                wired.app.writer.on_wait = hook
                results[name].append(_round(wired, args.writes, first, around))
                first += args.writes
        wired.app.close()
    provider.shutdown()
    print(f"store {args.store}, {args.writes} writes per block, one thread (every group a group of one)")
    print(f"{'variant':<42} {'CPU µs per write':>17} {'(median; quartiles)':>22}")
    for name, values in results.items():
        q1, median, q3 = statistics.quantiles(values, n=4)
        print(f"{name:<42} {median:>17.1f} {f'({q1:.1f} - {q3:.1f})':>22}")


if __name__ == "__main__":
    main()
