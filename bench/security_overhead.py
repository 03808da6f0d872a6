"""What authentication and TLS cost: ledger commands/s with both off beside both on, in the same run.

Run as ``python -m bench.security_overhead [--seconds S] [--threads T] [--repeats R] [--mtls] [--out FILE]``.
Each configuration gets a fresh ``ledger serve`` on a temporary SQLite file (the servers run one after the
other, never at once): "off" is plaintext with ``--insecure-no-auth``; "on" is TLS (a test CA made in the run)
with API keys and the default rate limits, mutual TLS too with ``--mtls``. T client threads in this process
enrol members (one write command each) for S seconds; the configurations alternate R times and the medians
are reported. With ``--out`` the figures replace the section between ``<!-- security-overhead -->`` markers
of that file (added at its end the first time); nothing else in it changes, and ``make bench`` keeps it.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import grpc

from bench import sections
from clients.python.loyalty_client import keyed_channel, tls_credentials
from ledger.testing.certs import TestCA
from ledger.testing.server import RunningServer, start_server, stop_server
from loyalty.v1 import ledger_pb2, ledger_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- security-overhead -->", "<!-- /security-overhead -->"


def start(workdir: Path, secure: bool, mtls: bool) -> RunningServer:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LEDGER_STORE", None)
    if not secure:
        return start_server(workdir, env=env, cwd=ROOT, extra_args=["--insecure-no-auth"])
    ca = TestCA("bench CA")
    cert, key = ca.issue("ledger", server=True).write(workdir, "server")
    args = ["--tls-cert", str(cert), "--tls-key", str(key)]
    client = ca.issue("bench-client", server=False)
    if mtls:
        (workdir / "ca.pem").write_bytes(ca.pem)
        args += ["--tls-client-ca", str(workdir / "ca.pem")]
    credentials = tls_credentials(ca.pem, *((client.cert_pem, client.key_pem) if mtls else ()))
    return start_server(workdir, env=env, cwd=ROOT, extra_args=args, credentials=credentials)


def drive(running: RunningServer, seconds: float, threads: int, tag: str) -> tuple[float, int]:
    """Enrolments per second over ``seconds`` from ``threads`` threads (one channel each); and the failures."""
    numbers = itertools.count()
    done = [0] * threads
    failed = [0] * threads

    def loop(t: int) -> None:
        with keyed_channel(running.target, running.api_key, credentials=running.credentials) as channel:
            enrol = ledger_pb2_grpc.LedgerServiceStub(channel).EnrollMember
            while time.monotonic() < stop_at:
                n = next(numbers)
                try:
                    enrol(ledger_pb2.EnrollMemberRequest(
                        program_id="little_sprout", idempotency_key=f"{tag}-{n}", member_id=f"{tag}-{n}",
                    ), timeout=30)  # fmt: skip
                    done[t] += 1
                except grpc.RpcError:
                    failed[t] += 1

    with keyed_channel(running.target, running.api_key, credentials=running.credentials) as channel:
        # Warm up: the server checks a key's secret with Argon2 once, then only a SHA-256 of it.
        ledger_pb2_grpc.LedgerServiceStub(channel).EnrollMember(ledger_pb2.EnrollMemberRequest(
            program_id="little_sprout", idempotency_key=f"{tag}-warm", member_id=f"{tag}-warm"), timeout=30)  # fmt: skip
    stop_at = time.monotonic() + seconds
    workers = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    began = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(done) / (time.monotonic() - began), sum(failed)


def report(rates: dict[str, list[float]], failures: dict[str, int], args: argparse.Namespace) -> str:
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    runs = {k: ", ".join(f"{r:.0f}" for r in v) for k, v in rates.items()}
    on_label = "TLS" + (" with client certificates" if args.mtls else "") + " + API keys + rate limits"
    return "\n".join([
        BEGIN,
        "## Authentication and TLS overhead",
        "",
        f"`python -m bench.security_overhead --seconds {args.seconds:g} --threads {args.threads} --repeats"
        f" {args.repeats}{' --mtls' if args.mtls else ''}`, {platform.machine()} with {os.cpu_count()} CPUs; one"
        " `ledger serve` on SQLite at a time, EnrollMember from client threads in one process (on the same"
        f" machine; load average {os.getloadavg()[0]:.1f} at the end).",
        "",
        "| configuration | enrolments/s (median) | runs | failed calls |",
        "|---|---|---|---|",
        f"| plaintext, `--insecure-no-auth` | {off:,.0f} | {runs['off']} | {failures['off']} |",
        f"| {on_label} | {on:,.0f} | {runs['on']} | {failures['on']} |",
        "",
        f"With both on: {100 * (on - off) / off:+.1f}% commands/s.",
        END,
    ])  # fmt: skip


def kept_section(path: Path) -> str:
    """The overhead section of ``path`` with a blank line before it, or "" (for bench/run.py, which rewrites the rest)."""
    return sections.kept(path, BEGIN, END)


def write_section(path: Path, section: str) -> None:
    sections.write(path, section, BEGIN, END)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each run (default 10)")
    p.add_argument("--threads", type=int, default=16, help="client threads (default 16)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each configuration, alternating (default 3)")
    p.add_argument("--mtls", action="store_true", help="require client certificates in the 'on' configuration")
    p.add_argument("--out", help="replace the overhead section of this file (e.g. BENCHMARKS.md)")
    args = p.parse_args(argv)
    rates: dict[str, list[float]] = {"off": [], "on": []}
    failures = {"off": 0, "on": 0}
    with tempfile.TemporaryDirectory(prefix="ledger-bench-sec-") as tmp:
        for run in range(args.repeats):
            for name in ("off", "on"):
                workdir = Path(tmp) / f"{name}-{run}"
                workdir.mkdir()
                running = start(workdir, name == "on", args.mtls)
                try:
                    rate, failed = drive(running, args.seconds, args.threads, f"{name}{run}")
                finally:
                    stop_server(running.process)
                rates[name].append(rate)
                failures[name] += failed
                print(f"{name} run {run + 1}: {rate:,.0f} enrolments/s ({failed} failed)", flush=True)
    section = report(rates, failures, args)
    print(section)
    if args.out:
        write_section(Path(args.out), section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
