"""The log's format and level, in a fresh interpreter configured as ``ledger`` configures itself: structlog and
the standard library's logging (as grpc, psycopg and nats use it) come out as one stream of lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import logging, structlog
from ledger.entrypoints import log_output
log_output.configure()
structlog.get_logger("ledger.test").info("from_structlog", answer=42)
structlog.get_logger("ledger.test").debug("hidden_debug")
logging.getLogger("grpc._server").warning("from grpc %s", "core")
logging.getLogger("psycopg.pool").info("pool chatter")
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("nats.aio.client").exception("from nats")
"""


def run(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_LOG_")}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=ROOT, env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert done.stdout == ""
    return done.stderr.splitlines()


def test_json_by_default_off_a_terminal_with_the_standard_library_routed_through_it() -> None:
    records = [json.loads(line) for line in run()]
    events = [r["event"] for r in records]
    assert events == ["from_structlog", "from grpc core", "from nats"]  # debug and library INFO are not written
    first, grpc_record, nats_record = records
    assert first["answer"] == 42 and first["level"] == "info" and first["logger"] == "ledger.test"
    assert first["timestamp"].endswith("Z")
    assert grpc_record["logger"] == "grpc._server" and grpc_record["level"] == "warning"
    assert nats_record["level"] == "error" and "ValueError: boom" in nats_record["exception"]


def test_level_and_console_format_are_configurable() -> None:
    lines = run(LEDGER_LOG_FORMAT="console", LEDGER_LOG_LEVEL="debug")
    text = "\n".join(lines)
    assert "from_structlog" in text and "hidden_debug" in text and "pool chatter" in text
    assert not any(line.startswith("{") for line in lines)
    quiet = [json.loads(line)["event"] for line in run(LEDGER_LOG_LEVEL="error")]
    assert quiet == ["from nats"]


def test_a_wrong_setting_is_refused_with_its_name() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_LOG_")}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=ROOT, env={**clean, "PYTHONPATH": str(ROOT), "LEDGER_LOG_FORMAT": "xml"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "LEDGER_LOG_FORMAT" in done.stderr


IN_MEMORY = """
import io, structlog
from ledger.entrypoints import log_output
buffer = io.StringIO()
log_output.configure(buffer, fmt="json")
log = structlog.get_logger("ledger.test")
log.info("first")
log.info("second", long="x" * 8192)
log.info("third")
print(buffer.getvalue(), end="")
"""


def test_a_stream_without_a_file_descriptor_takes_every_line() -> None:
    """An in-memory stream (no ``fileno``): each line goes through the stream's own lock; the second line must not
    wait forever on a lock the first left taken or that the writer holds itself."""
    done = subprocess.run(
        [sys.executable, "-c", IN_MEMORY], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert [json.loads(line)["event"] for line in done.stdout.splitlines()] == ["first", "second", "third"]


LOCALS_PROGRAM = """
import structlog
from ledger.entrypoints import log_output
log_output.configure()
def check(presented_key):
    raise ValueError("key check failed")
try:
    check("lk_live_do_not_print_me")
except ValueError:
    structlog.get_logger("ledger.test").exception("check_failed")
"""


def test_a_failure_s_traceback_never_prints_the_frames_locals_in_either_format() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_LOG_")}
    for fmt in ("json", "console"):
        done = subprocess.run(
            [sys.executable, "-c", LOCALS_PROGRAM], cwd=ROOT, capture_output=True, text=True, check=True,
            env={**clean, "PYTHONPATH": str(ROOT), "LEDGER_LOG_FORMAT": fmt}, timeout=60,
        )  # fmt: skip
        assert "ValueError: key check failed" in done.stderr, fmt  # the traceback is there ...
        assert "lk_live_do_not_print_me" not in done.stderr, fmt  # ... without the key a frame held
