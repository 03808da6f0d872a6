"""Where one ``ledger serve``'s CPU goes under the benchmark's mix: its CPU time per command, and optionally a
py-spy profile of it taken while the mix runs.

Run as ``python -m bench.profile_server [--members N] [--seconds S] [--runs R] [--py-spy FILE] [--serve-arg A]``
(about a minute). One real ``ledger serve`` on a temporary SQLite file (durable, authentication on, the
benchmark's rate limit), set up and driven exactly as ``bench.run`` drives it (2 client processes x 32 threads,
the same mix), then ``--runs`` runs of ``--seconds`` each: for each, the server's own CPU time (from
``/proc/PID/stat``) per successful command. With ``--py-spy FILE`` the last run is sampled by ``py-spy record``
(``--format raw``: collapsed stacks, one line a stack with its count, for ``--top``'s summary or a flame graph
tool); py-spy is not a dependency of the ledger (``pip install py-spy``). With ``--perf FILE`` the last run is
sampled by Linux ``perf record -g`` too (native code and the kernel: where py-spy sees nothing), summarised by
shared object and by symbol. Each run also prints the server's user and system time and context switches per
command, and its CPU by thread (the writer, grpc's polling thread and its C threads, the worker threads). ``--serve-arg`` passes an option
on to ``ledger serve`` (repeatable: ``--serve-arg=--workers --serve-arg=16``). Nothing is written to
BENCHMARKS.md; ``docs/performance.md`` quotes runs of it.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.run import KEY_LIMIT, ROOT, WORKERS, _server_env, cpu_seconds, run_phase, setup_worker
from ledger.testing.server import start_server, stop_server


def thread_switches(pid: int) -> dict[int, int]:
    """Context switches (voluntary and not) of each thread of ``pid`` so far, by thread id."""
    out: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            lines = (task / "status").read_text().splitlines()
        except OSError:
            continue
        out[int(task.name)] = sum(int(line.split()[1]) for line in lines if "ctxt_switches:" in line)
    return out


def thread_seconds(pid: int) -> dict[tuple[int, str], float]:
    """CPU seconds (user + system) of each thread of ``pid``, by (thread id, name)."""
    out: dict[tuple[int, str], float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[(int(task.name), name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def user_system(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def switches(pid: int) -> int:
    """Context switches (voluntary and not) of every thread of ``pid`` so far."""
    return sum(thread_switches(pid).values())


def thread_split(
    before: dict[tuple[int, str], float],
    after: dict[tuple[int, str], float],
    calls: int,
    switched: dict[int, int] | None = None,
) -> str:
    """Microseconds per command by thread: the busiest threads one by one (with their context switches per
    command when ``switched`` has them), the rest summed by name."""
    used = sorted(((after[k] - before.get(k, 0.0), k) for k in after), reverse=True)
    switched = switched or {}
    parts = [
        f"{name}[{tid}] {1e6 * s / max(calls, 1):.0f}"
        + (f" ({switched[tid] / max(calls, 1):.1f} switches)" if tid in switched else "")
        for s, (tid, name) in used[:4]
    ]
    rest: dict[str, float] = {}
    for s, (_, name) in used[4:]:
        rest[name] = rest.get(name, 0.0) + 1e6 * s / max(calls, 1)
    parts += [f"other {name} {us:.0f}" for name, us in sorted(rest.items(), key=lambda kv: -kv[1]) if us >= 1]
    return "  us/cmd by thread: " + ", ".join(parts)


def summarise(raw: Path, top: int) -> str:
    """The ``top`` frames by inclusive and by own share of the samples in py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"{total} samples"]
    for title, counter in (("inclusive", inclusive), ("own", own)):
        lines.append(f"-- {title}")
        lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in counter.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=2_000)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--py-spy", type=Path, help="sample the last run with py-spy into this file (collapsed stacks)"
    )
    p.add_argument(
        "--perf", type=Path, help="sample the last run with Linux perf into this file (native and kernel)"
    )
    p.add_argument("--idle", action="store_true", help="py-spy: include idle (waiting) frames")
    p.add_argument("--gil", action="store_true", help="py-spy: only the thread holding the GIL")
    p.add_argument("--top", type=int, default=60)
    p.add_argument("--serve-arg", action="append", default=[])
    a = p.parse_args(argv)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="ledger-profile-") as tmpdir, ExitStack() as stack:
        workdir = Path(tmpdir) / "sqlite"
        workdir.mkdir()
        extra = ("--workers", str(WORKERS), "--rate-limit", KEY_LIMIT, *a.serve_arg)
        running = start_server(workdir, env=_server_env(), cwd=ROOT, extra_args=extra)
        stack.callback(stop_server, running.process)
        if running.api_key:
            os.environ["LEDGER_API_KEY"] = running.api_key
        pid = running.process.pid
        print(f"server pid {pid}", flush=True)
        chunk = -(-a.members // 2)
        with ctx.Pool(2) as pool:
            pool.starmap(setup_worker, [([running.target], i, min(a.members, i + chunk), 32)
                                        for i in range(0, a.members, chunk)])  # fmt: skip
        cpu_us: list[float] = []
        for run in range(a.runs):
            spy = None
            if a.py_spy is not None and run == a.runs - 1:
                command = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--format", "raw", "--output", str(a.py_spy),
                           "--duration", str(int(a.seconds)), "--rate", "200", "--nonblocking"]  # fmt: skip
                command += [
                    flag for flag, on in (("--idle", a.idle), ("--gil", a.gil), ("--function", True)) if on
                ]
                spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.5)
            perf = None
            if a.perf is not None and run == a.runs - 1:
                perf = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-p", str(pid), "-o", str(a.perf), "--",
                                         "sleep", str(a.seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            before = cpu_seconds(pid)
            threads_before = thread_seconds(pid)
            user_before, system_before = user_system(pid)
            switches_before = thread_switches(pid)
            rate, result = run_phase(ctx, "ledger", [running.target], a.members, 2, 32, a.seconds)
            cpu_us.append((cpu_seconds(pid) - before) / max(result.ok, 1) * 1e6)
            print(f"run {run + 1}: {rate:.0f} cmd/s, server CPU {cpu_us[-1]:.0f} us/cmd, "
                  f"{result.errors} errors {result.error_kinds}", flush=True)  # fmt: skip
            user_after, system_after = user_system(pid)
            calls = max(result.ok, 1)
            print(
                f"  user {1e6 * (user_after - user_before) / calls:.0f} us, system "
                f"{1e6 * (system_after - system_before) / calls:.0f} us, "
                f"{(switches(pid) - sum(switches_before.values())) / calls:.1f} context switches per command"
            )
            switched = {tid: n - switches_before.get(tid, 0) for tid, n in thread_switches(pid).items()}
            print(thread_split(threads_before, thread_seconds(pid), result.ok, switched), flush=True)
            for sampler in (spy, perf):
                if sampler is not None:
                    sampler.wait(60)
        print(
            f"median server CPU {statistics.median(cpu_us):.0f} us/cmd; load average {os.getloadavg()[0]:.1f}"
        )
        if a.py_spy is not None and a.py_spy.exists():
            print(summarise(a.py_spy, a.top))
        if a.perf is not None and a.perf.exists():
            for key in ("dso", "sym"):
                report = subprocess.run(["perf", "report", "-i", str(a.perf), "--no-children", "--sort", key, "-g", "none",
                                         "--stdio"], capture_output=True, text=True).stdout  # fmt: skip
                lines = [line for line in report.splitlines() if line.strip() and not line.startswith("#")]
                print(f"-- perf by {key}", *lines[: a.top], sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
