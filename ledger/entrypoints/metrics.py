"""Prometheus metrics of one server process, served over HTTP on ``--metrics-listen`` (``LEDGER_METRICS_LISTEN``).

The numbers (each described in ``docs/operations.md`` with what to alert on):

* ``ledger_rpc_requests_total{method,status}`` and ``ledger_rpc_duration_seconds{method}``: every ``loyalty.v1``
  call, from the access interceptor (:mod:`ledger.entrypoints.grpc.access`); errors are the statuses other
  than ``OK``.
* ``ledger_writer_queue_depth``, ``ledger_writer_alive``: read when scraped, nothing on the write path.
* ``ledger_writer_group_commands``, ``ledger_writer_commit_seconds``, ``ledger_writer_groups_total{outcome}``,
  ``ledger_store_errors_total``: one observation per group the writer sends to the store (never per event).
* ``ledger_build_info{version,python}``: always 1, the labels say what runs.
* ``ledger_webhook_deliveries_total{outcome}``: webhook attempts by outcome; ``ledger_webhook_lag_seconds`` and
  ``ledger_webhook_dead_letters`` per subscription, read when scraped (:meth:`Metrics.watch_webhooks`).

Each process has its own registry (no global state), so tests may build several.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = structlog.get_logger("ledger.metrics")

#: Call durations: sub-millisecond reads to multi-second stalls.
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Commit (append + fsync) latency.
COMMIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
#: Commands per group (the writer takes at most 256 at a time by default).
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def version() -> str:
    try:
        return metadata.version("loyalty-ledger")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a tree that was never installed
        return "unknown"


class Metrics:
    """The process's collectors; ``call_finished`` and ``group_committed`` are the only hot-path entries."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ledger_rpc_requests", "loyalty.v1 calls finished, by method and gRPC status",
                                ["method", "status"], registry=r)
        self.durations = Histogram("ledger_rpc_duration_seconds", "loyalty.v1 call duration, by method",
                                   ["method"], buckets=CALL_BUCKETS, registry=r)
        self.group_commands = Histogram("ledger_writer_group_commands", "commands per group sent to the store",
                                        buckets=GROUP_BUCKETS, registry=r)
        self.commit_seconds = Histogram("ledger_writer_commit_seconds",
                                        "seconds one group's append (and fsync) took", buckets=COMMIT_BUCKETS, registry=r)
        self.groups = Counter("ledger_writer_groups", "groups sent to the store, by outcome", ["outcome"], registry=r)
        self.store_errors = Counter("ledger_store_errors", "groups the store failed to commit (callers got UNAVAILABLE)",
                                    registry=r)
        self.queue_depth = Gauge("ledger_writer_queue_depth", "requests waiting for the writer", registry=r)
        self.writer_alive = Gauge("ledger_writer_alive", "1 while the writer thread runs, 0 once it ended", registry=r)
        build = Gauge("ledger_build_info", "the ledger's version and Python's, as labels", ["version", "python"],
                      registry=r)
        build.labels(version(), platform.python_version()).set(1)
        self.webhook_deliveries = Counter("ledger_webhook_deliveries", "webhook attempts, by outcome", ["outcome"],
                                          registry=r)
        self._webhook_outcomes = {o: self.webhook_deliveries.labels(o)
                                  for o in ("delivered", "failed", "dead_lettered", "replayed")}
        self.webhooks = WebhookGauges()
        r.register(self.webhooks)
        # present at 0 from the start, so rate() sees the first increase; children looked up once
        self._outcomes = {o: self.groups.labels(o) for o in ("committed", "conflict", "store_error")}
        self._calls: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._calls_lock = threading.Lock()
        self._http: Any = None

    # -- hot path ---------------------------------------------------------------------------------------------

    def call_finished(self, method: str, status: str, seconds: float) -> None:
        children = self._calls.get((method, status))
        if children is None:
            with self._calls_lock:
                children = (self.requests.labels(method, status), self.durations.labels(method))
                self._calls[(method, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def group_committed(self, commands: int, seconds: float, outcome: str) -> None:
        self.group_commands.observe(commands)
        self.commit_seconds.observe(seconds)
        counter = self._outcomes.get(outcome)
        (counter if counter is not None else self.groups.labels(outcome)).inc()
        if outcome == "store_error":
            self.store_errors.inc()

    # -- wiring -------------------------------------------------------------------------------------------------

    def watch_writer(self, writer: Any) -> None:
        """Report the writer's queue and liveness (read at scrape time) and observe its groups."""
        depth: Callable[[], float] = lambda: float(writer.queue_depth)  # noqa: E731
        alive: Callable[[], float] = lambda: 1.0 if writer.alive else 0.0  # noqa: E731
        self.queue_depth.set_function(depth)
        self.writer_alive.set_function(alive)
        writer.on_group = self.group_committed

    def webhook_outcome(self, outcome: str) -> None:
        counter = self._webhook_outcomes.get(outcome)
        (counter if counter is not None else self.webhook_deliveries.labels(outcome)).inc()

    def watch_webhooks(self, deliverer: Any) -> None:
        """Count the deliverer's attempts and report its lag and dead letters per subscription (at scrape)."""
        deliverer.on_outcome = self.webhook_outcome
        self.webhooks.deliverer = deliverer

    def serve(self, listen: str) -> int:
        """Serve ``/metrics`` on ``listen`` (``HOST:PORT``; port 0 picks one) in a daemon thread; the bound port."""
        host, sep, port_text = listen.rpartition(":")
        if not sep or not port_text.isdigit():
            raise SystemExit(f"--metrics-listen must be HOST:PORT, got {listen!r}")
        host = host.strip("[]") or "0.0.0.0"
        httpd, _ = start_http_server(int(port_text), addr=host, registry=self.registry)
        self._http = httpd
        port = int(httpd.server_port)
        log.info("metrics_serving", listen=listen, port=port)
        return port

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class WebhookGauges(Collector):
    """Per subscription, read when scraped: the deliverer's lag, and the dead letters waiting (one query each)."""

    def __init__(self) -> None:
        self.deliverer: Any = None

    def collect(self) -> Any:
        lag = GaugeMetricFamily("ledger_webhook_lag_seconds",
                                "age of the oldest event a webhook subscription has not passed (0: caught up)",
                                labels=["subscription_id"])  # fmt: skip
        dead = GaugeMetricFamily("ledger_webhook_dead_letters", "dead letters waiting for an operator, by subscription",
                                 labels=["subscription_id"])  # fmt: skip
        deliverer = self.deliverer
        if deliverer is not None:
            for sid, seconds in sorted(dict(deliverer.lag_seconds).items()):
                lag.add_metric([sid], seconds)
            try:
                for s in deliverer.subscriptions.listed():
                    dead.add_metric([s.subscription_id], len(deliverer.subscriptions.dead_letters(s.subscription_id, "dead")))
            except Exception as exc:  # the store away: the scrape still answers, without these
                log.warning("webhook_metrics_unavailable", error=repr(exc))
        yield lag
        yield dead
