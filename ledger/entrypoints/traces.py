"""Traces for ``ledger serve``: turned on by the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), sent over OTLP/gRPC from a batch, flushed when the server stops.

Without either variable nothing here imports OpenTelemetry and the call pipeline has no tracing layer. With one
set, the optional extra ``otel`` must be installed (``pip install 'loyalty-ledger[otel]'``), else ``ledger
serve`` exits with a message saying so. The service is named by ``OTEL_SERVICE_NAME`` (default
``loyalty-ledger``); the exporter reads its other ``OTEL_EXPORTER_OTLP_*`` variables (headers, certificate,
timeout) itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledger.entrypoints.grpc.tracing import Tracing

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
DEFAULT_SERVICE_NAME = "loyalty-ledger"
MISSING_EXTRA = (
    "traces were asked for ({variable} is set) but OpenTelemetry is not installed: "
    "install the extra with pip install 'loyalty-ledger[otel]', or unset {variable}"
)


@dataclass(frozen=True)
class Traces:
    """The tracing layer for the server's pipeline (also the writer's ``on_wait`` hook) and how to flush and
    stop the exporter on shutdown."""

    layer: Tracing
    stop: Callable[[], None]


def asked(environ: Mapping[str, str]) -> str | None:
    """The variable that turns traces on, if one is set (not empty)."""
    return next((name for name in ENDPOINT_VARIABLES if environ.get(name, "").strip()), None)


def start(environ: Mapping[str, str]) -> Traces | None:
    """Traces as ``environ`` asks: None when off; raises ``SystemExit`` when asked for without the extra."""
    variable = asked(environ)
    if variable is None:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from ledger.entrypoints.grpc.tracing import Tracing
    except ImportError as exc:
        raise SystemExit(MISSING_EXTRA.format(variable=variable)) from exc
    service_name = environ.get("OTEL_SERVICE_NAME", "").strip() or DEFAULT_SERVICE_NAME
    # flushed by ``stop`` as ``ledger serve`` shuts down, not by an exit hook of its own
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return Traces(Tracing(provider.get_tracer("ledger.entrypoints.grpc")), provider.shutdown)
