"""Shape checks of requests, before anything reaches the ledger: required fields, lengths, limits.

A :class:`Checks` collects every bad field of one request and raises one ``InvalidFields`` (INVALID_ARGUMENT with
one BadRequest violation per field, named by its path in the request, e.g. ``lines[3].paid_fen``).
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
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
# Times the ledger accepts anywhere in a request: 1970-01-01T00:00:00Z (inclusive) .. 2200-01-01T00:00:00Z
# (exclusive). Far enough for any business time, near enough that every date derived from one (expiries a year
# on, reviews, grants) stays representable.
_MIN_SECONDS = 0
_MAX_SECONDS = 7258118400 - 1
TIME_RANGE = "between 1970-01-01T00:00:00Z and 2199-12-31T23:59:59Z"
#: Any integer field of a request, whatever its own limit.
MAX_INTEGER = 10**12
#: Any repeated field of a request.
MAX_REPEATED = MAX_LINES
#: String fields allowed longer than MAX_TEXT, with their limit in characters.
LONG_TEXT: dict[str, int] = {"note": MAX_NOTE, "reason": MAX_NOTE, "document": MAX_DOCUMENT}
#: String fields that may hold line breaks and tabs (still no other control character).
MULTILINE = frozenset({"note", "reason", "document"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


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

    def min_version(self, value: int) -> None:
        """A query's read-your-writes ``min_version``: a member version (0 = no requirement)."""
        self.between("min_version", value, 0, 2**62)

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
            self.fail(field, f"must be {TIME_RANGE}")

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


# -- every field of every request ---------------------------------------------------------------------------------


def check_request(request: Message) -> None:
    """Limits that hold for every field of every request, whichever rpc it is for: raises ``InvalidFields``.

    Walks the message generically: no string holds a control character (``note``, ``reason`` and ``document``
    may hold tabs and line breaks) or is longer than its limit (128 characters; ``note`` and ``reason`` 1,000;
    ``document`` 1 MiB), every set timestamp is within 1970..2199, every integer within +-10^12, every enum value
    one the API defines, no repeated field longer than 200. The rpc's own checks then add what is particular to it.
    """
    c = Checks()
    _walk(c, request, "")
    c.done()


def _walk(c: Checks, message: Message, prefix: str) -> None:
    for fd, value in message.ListFields():
        path = f"{prefix}{fd.name}"
        if fd.is_repeated:
            if len(value) > MAX_REPEATED:
                c.fail(path, f"must have at most {MAX_REPEATED} entries")
                continue
            for i, item in enumerate(value):
                _field(c, fd, item, f"{path}[{i}]")
        else:
            _field(c, fd, value, path)


def _field(c: Checks, fd: FieldDescriptor, value: Any, path: str) -> None:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        if isinstance(value, Timestamp):
            if not (_MIN_SECONDS <= value.seconds <= _MAX_SECONDS and 0 <= value.nanos < 1_000_000_000):
                c.fail(path, f"must be {TIME_RANGE}")
        elif fd.message_type is not None and fd.message_type.full_name.startswith("google.protobuf."):
            c.fail(path, "is not supported")
        else:
            _walk(c, value, f"{path}.")
    elif fd.type == FieldDescriptor.TYPE_STRING:
        _string(c, fd.name, value, path)
    elif fd.type == FieldDescriptor.TYPE_BYTES:
        if len(value) > MAX_DOCUMENT:
            c.fail(path, "must be at most 1 MiB")
    elif fd.type == FieldDescriptor.TYPE_ENUM:
        if fd.enum_type is not None and fd.enum_type.values_by_number.get(value) is None:
            c.fail(path, f"unknown value {value}")
    elif fd.type != FieldDescriptor.TYPE_BOOL and not -MAX_INTEGER <= value <= MAX_INTEGER:
        c.fail(path, f"must be between {-MAX_INTEGER} and {MAX_INTEGER}")


def _string(c: Checks, name: str, value: str, path: str) -> None:
    control = (_CONTROL_MULTILINE if name in MULTILINE else _CONTROL).search(value)
    if control is not None:
        c.fail(path, f"must not contain the control character U+{ord(control.group()):04X}")
        return
    limit = LONG_TEXT.get(name, MAX_TEXT)
    if name == "document":
        if len(value.encode()) > limit:
            c.fail(path, "must be at most 1 MiB")
    elif len(value) > limit:
        c.fail(path, f"must be at most {limit} characters")
