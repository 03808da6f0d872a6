"""What a refund takes back and gives back, so that partial refunds add up exactly to a full one.

Each function works on running totals: given everything refunded so far and what was already taken (or
returned), it gives this step's amount. Integer arithmetic only.
"""

from __future__ import annotations


def _check(amount: int, refunded_fen_so_far: int, paid_fen: int, done_so_far: int) -> None:
    if amount < 0 or paid_fen < 0 or done_so_far < 0:
        raise ValueError("amounts cannot be negative")
    if not 0 <= refunded_fen_so_far <= paid_fen:
        raise ValueError(f"refunded so far ({refunded_fen_so_far}) must be within 0..{paid_fen}")


def refund_takeback(earned: int, refunded_fen_so_far: int, paid_fen: int, taken_so_far: int) -> int:
    """Points (or growth) to take back now from ``earned``: ``ceil(earned * refunded_so_far / paid) - taken``,
    rounding never in the member's favour. Nothing is taken back from a line that paid nothing."""
    _check(earned, refunded_fen_so_far, paid_fen, taken_so_far)
    if paid_fen == 0:
        return 0
    due = -(-earned * refunded_fen_so_far // paid_fen)
    if taken_so_far > due:
        raise ValueError(f"already took back {taken_so_far}, more than the {due} due")
    return due - taken_so_far


def redeemed_return(redeemed: int, refunded_fen_so_far: int, paid_fen_total: int, returned_so_far: int) -> int:
    """Points that paid for an order to give back now: ``floor(redeemed * refunded_so_far / paid_total) -
    returned``. A full refund gives back all of them (an order paid with no money is refunded whole)."""
    _check(redeemed, refunded_fen_so_far, paid_fen_total, returned_so_far)
    due = redeemed if refunded_fen_so_far == paid_fen_total else redeemed * refunded_fen_so_far // paid_fen_total
    if returned_so_far > due:
        raise ValueError(f"already returned {returned_so_far}, more than the {due} due")
    return due - returned_so_far
