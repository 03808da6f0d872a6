"""Where and how the ledger's log is written: structlog over the standard library's logging, one line per record.

``configure`` is called once by the ``ledger`` command. The format is ``LEDGER_LOG_FORMAT``: ``json`` (one JSON
object a line: ``timestamp``, ``level``, ``logger``, ``event`` and the record's fields; an exception as
``exception``, its whole stack) or ``console`` (aligned text, coloured on a terminal); by default JSON unless the
stream is a terminal. ``LEDGER_LOG_LEVEL`` (``debug``, ``info`` (default), ``warning``, ``error``) is the lowest
level written. Records of libraries that log through the standard library (grpc, psycopg, nats) go through the
same renderer, so the whole log is one format. Each record is written with one ``write`` call, so the
processes of ``serve --processes N`` can share one stderr without interleaving their lines.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

FORMATS = ("json", "console")
LEVELS = ("debug", "info", "warning", "error", "critical")

#: Libraries whose INFO records are noise in a service log: written from WARNING on unless the level is debug.
QUIET_LIBRARIES = ("grpc", "psycopg", "psycopg.pool", "nats", "kurrentdbclient", "asyncio")


def log_format(stream: TextIO, configured: str | None = None) -> str:
    """``configured`` (or ``$LEDGER_LOG_FORMAT``); unset: console on a terminal, JSON otherwise."""
    chosen = (configured or os.environ.get("LEDGER_LOG_FORMAT") or "").strip().lower()
    if not chosen:
        return "console" if _isatty(stream) else "json"
    if chosen not in FORMATS:
        raise SystemExit(f"LEDGER_LOG_FORMAT must be one of {', '.join(FORMATS)}, got {chosen!r}")
    return chosen


def log_level(configured: str | None = None) -> int:
    chosen = (configured or os.environ.get("LEDGER_LOG_LEVEL") or "info").strip().lower()
    if chosen not in LEVELS:
        raise SystemExit(f"LEDGER_LOG_LEVEL must be one of {', '.join(LEVELS)}, got {chosen!r}")
    return int(logging.getLevelName(chosen.upper()))


def configure(stream: TextIO | None = None, *, fmt: str | None = None, level: str | None = None) -> None:
    """Send structlog and the standard library's logging to ``stream`` (default stderr) in one format."""
    stream = stream if stream is not None else sys.stderr
    chosen_format = log_format(stream, fmt)
    threshold = log_level(level)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Any]
    if chosen_format == "json":
        renderer = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(ensure_ascii=False)]
    else:
        # A traceback as plain text: never the frames' locals (rich would print them), which may hold a key.
        console = structlog.dev.ConsoleRenderer(colors=_isatty(stream), exception_formatter=structlog.dev.plain_traceback)
        renderer = [console]
    # Records of the standard library (grpc, psycopg, nats) are rendered by a formatter with the same chain.
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = logging.StreamHandler(stream)  # writes record + newline in one call
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(threshold if threshold <= logging.DEBUG else max(threshold, logging.WARNING))
    logging.captureWarnings(True)
    # The ledger's own records skip the standard library (a third of the cost): rendered here, written with
    # one write call under the stream's lock.
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *renderer],
        logger_factory=_NamedWriterFactory(stream),
        # Records below the threshold are dropped before any processor runs: a disabled level costs one call.
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        cache_logger_on_first_use=True,
    )


#: A line up to this long is written with one unlocked ``write`` system call: the kernel keeps such a write whole
#: (a pipe's ``PIPE_BUF``; a regular file's writes never overlap). A longer one (a stack) takes the stream's lock.
_ATOMIC_LINE = 4096


class _NamedWriter(structlog.WriteLogger):
    """structlog's line writer with the logger's name (for ``add_logger_name``).

    To a stream with a file descriptor, a line goes out in one ``os.write``, without the stream's lock and
    buffer: under load the calls' threads would otherwise queue on that lock around a system call (each queued
    thread a sleep and a wake-up), which cost more than rendering the line."""

    def __init__(self, stream: TextIO, name: str) -> None:
        super().__init__(stream)
        self.name = name
        self._fd = _descriptor(stream)

    def msg(self, message: str) -> None:
        data = (message + "\n").encode("utf-8", "replace")
        if self._fd is None:
            super().msg(message)  # takes the stream's lock itself (not reentrant: never call it holding it)
            return
        if len(data) > _ATOMIC_LINE:
            with self._lock:
                self._file.flush()
                _write_all(self._fd, data)
            return
        _write_all(self._fd, data)

    info = debug = warn = warning = error = critical = exception = log = fatal = failure = err = msg


def _descriptor(stream: TextIO) -> int | None:
    """``stream``'s file descriptor when lines can go straight to it, else None (an in-memory stream)."""
    try:
        stream.flush()
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _write_all(fd: int, data: bytes) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


class _NamedWriterFactory:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, *args: Any) -> _NamedWriter:
        return _NamedWriter(self._stream, str(args[0]) if args else "ledger")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
