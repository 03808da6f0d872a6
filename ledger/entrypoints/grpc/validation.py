"""Shape checks of requests, before anything reaches the ledger: required fields, lengths, limits.

A :class:`Checks` collects every bad field of one request and raises one ``InvalidFields`` (INVALID_ARGUMENT with
one BadRequest violation per field, named by its path in the request, e.g. ``lines[3].paid_fen``).
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from ledger.entrypoints.grpc.errors import InvalidFields
from loyalty.v1 import common_pb2

MAX_TEXT = 128
MAX_NOTE = 1000
MAX_DOCUMENT = 1 << 20
MAX_AMOUNT = 10**12
MAX_LINES = 200
MAX_IDENTITIES = 16
MAX_QUANTITY = 1_000_000
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
MAX_HOLD_TTL = 3600
MAX_CONSUME_QUANTITY = 1000

PROGRAM_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
CALLER_ID = re.compile(r"[\x21-\x7e]{1,128}")
# Timestamp range accepted by google.protobuf.Timestamp (0001-01-01 .. 9999-12-31).
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799


class Checks:
    """Collects violations; :meth:`done` raises them all at once."""

    def __init__(self) -> None:
        self.violations: list[tuple[str, str]] = []

    def fail(self, field: str, message: str) -> None:
        self.violations.append((field, message))

    def done(self) -> None:
        if self.violations:
            raise InvalidFields(self.violations)

    # -- ids and text ---------------------------------------------------------------------------------------

    def program_id(self, value: str, field: str = "program_id") -> None:
        if not value:
            self.fail(field, "is required")
        elif not PROGRAM_ID.fullmatch(value):
            self.fail(field, "must be 1..64 characters of a-z, 0-9 and _, starting with a letter")

    def caller_id(self, field: str, value: str, *, required: bool = True) -> None:
        """An id chosen by the caller: 1..128 printable ASCII characters without whitespace."""
        if not value:
            if required:
                self.fail(field, "is required")
        elif not CALLER_ID.fullmatch(value):
            self.fail(field, "must be 1..128 printable ASCII characters without whitespace")

    def text(self, field: str, value: str, *, required: bool = False, max_len: int = MAX_TEXT) -> None:
        if not value:
            if required:
                self.fail(field, "is required")
        elif len(value) > max_len:
            self.fail(field, f"must be at most {max_len} characters")

    def idempotency_key(self, value: str, field: str = "idempotency_key") -> None:
        if not value:
            self.fail(field, "is required (1..128 characters)")
        elif len(value) > MAX_TEXT:
            self.fail(field, "must be at most 128 characters")

    # -- numbers --------------------------------------------------------------------------------------------

    def between(self, field: str, value: int, low: int, high: int) -> None:
        if not low <= value <= high:
            self.fail(field, f"must be between {low} and {high}")

    def amount(self, field: str, value: int, *, low: int = 0) -> None:
        self.between(field, value, low, MAX_AMOUNT)

    def page_size(self, value: int, field: str = "page_size") -> int:
        self.between(field, value, 0, MAX_PAGE_SIZE)
        return value or DEFAULT_PAGE_SIZE

    def enum(self, field: str, value: int, known: Any, *, required: bool = True) -> None:
        if value == 0:
            if required:
                self.fail(field, "is required")
        elif value not in known.values():
            self.fail(field, f"unknown value {value}")

    # -- times ----------------------------------------------------------------------------------------------

    def timestamp(self, field: str, message: Any, name: str, *, required: bool = False) -> None:
        if not message.HasField(name):
            if required:
                self.fail(field, "is required")
            return
        ts: Timestamp = getattr(message, name)
        if not (_MIN_SECONDS <= ts.seconds <= _MAX_SECONDS and 0 <= ts.nanos < 1_000_000_000):
            self.fail(field, "is not a valid timestamp")

    # -- shared messages ------------------------------------------------------------------------------------

    def context(self, request: Any, *, operator_required: bool = False, field: str = "context") -> None:
        """``RequestContext``: optional strings at most 128 characters, a known channel, a valid time."""
        if not request.HasField("context"):
            if operator_required:
                self.fail(f"{field}.operator_id", "is required")
            return
        ctx = request.context
        if ctx.channel not in common_pb2.Channel.values():
            self.fail(f"{field}.channel", f"unknown value {ctx.channel}")
        self.caller_id(f"{field}.store_id", ctx.store_id, required=False)
        self.caller_id(f"{field}.terminal_id", ctx.terminal_id, required=False)
        self.caller_id(f"{field}.operator_id", ctx.operator_id, required=operator_required)
        self.text(f"{field}.correlation_id", ctx.correlation_id)
        self.timestamp(f"{field}.occurred_at", ctx, "occurred_at")

    def order_lines(self, lines: Any, field: str = "lines") -> None:
        if not 1 <= len(lines) <= MAX_LINES:
            self.fail(field, f"an order has 1..{MAX_LINES} lines")
        seen: set[str] = set()
        for i, line in enumerate(lines):
            path = f"{field}[{i}]"
            self.caller_id(f"{path}.line_id", line.line_id)
            if line.line_id and line.line_id in seen:
                self.fail(f"{path}.line_id", f"duplicate line id {line.line_id!r}")
            seen.add(line.line_id)
            self.caller_id(f"{path}.sku", line.sku)
            self.text(f"{path}.category", line.category)
            self.between(f"{path}.quantity", line.quantity, 1, MAX_QUANTITY)
            self.amount(f"{path}.paid_fen", line.paid_fen)


def check_purchase_shape(c: Checks, request: Any, *, order_required: bool = True) -> None:
    """The fields RecordPurchase and QuotePurchase share."""
    c.program_id(request.program_id)
    c.caller_id("member_id", request.member_id)
    c.caller_id("order_id", request.order_id, required=order_required)
    c.order_lines(request.lines)
    c.amount("order_total_fen", request.order_total_fen)
    c.amount("points_paid", request.points_paid)
    c.caller_id("hold_id", request.hold_id, required=False)
    if request.order_total_fen and len(request.lines) <= MAX_LINES:
        lines_total = sum(line.paid_fen for line in request.lines)
        if request.order_total_fen < lines_total:
            c.fail("order_total_fen", f"must not be below the sum of the lines ({lines_total})")
    c.context(request)
