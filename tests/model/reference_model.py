"""A second, deliberately plain implementation of the reference program "Little Sprout", for model-based tests.

It follows Little Sprout's exact arithmetic literally and shares no rule code with the ledger: no
``policies.rules``, no ``ledger.domain.decide``. Lots are a plain list, every balance is summed from them when
asked, nothing is cached, and every rule is written out where it is used. Little Sprout's numbers are written
here as the program's rules give them.

Covered (one member at a time, on a test clock):

* purchases of several lines: ``floor(paid_fen * rate * multiplier / 100)`` per line with ``Fraction``,
  ``infant_formula`` at 1/2, ``LS-RICE-CEREAL-01`` +20 a unit after the multiplier; multipliers tier
  (1.0 / 1.2 / 1.5 / 2.0), member day (the 15th, local), 618 (1-18 June 2026) and the 2026 win-back campaign
  (30 days without activity), highest wins, capped at 3; growth ``floor(total / 100)`` at business time;
* late (offline) sales: judged as of their business time (tier, member day, campaigns), refused beyond the
  30-day window or before the program's first policy;
* pending 7 days then active; expiry at the end of the local month 12 months after the activation month;
* spending soonest expiry first (ties: earliest business time, then the order recorded);
* holds: redemption cap by tier (10 / 15 / 20 / 30 % of the order, counting open holds and commits for the
  same order), 15-minute default life, allocation that skips lots expiring before the hold does, commit,
  partial commit, release, time-out;
* refunds of whole orders and parts of lines: ceil take-back (the sale's own lot, then other active lots
  soonest expiry first, then arrears: Little Sprout's clawback is ``arrears``), growth taken back the same
  way, points that paid for the order returned by floor into their lots latest-expiring first, or as a new
  lot expiring 30 days after the refund when their lot has expired;
* arrears repaid first by lots as they become active (and by behaviour points and positive adjustments);
* behaviour awards with their caps (day and month, local) and refusals (``BEHAVIOUR_CAP_REACHED``,
  ``REFERENCE_ALREADY_AWARDED``), referrals counting towards Silver;
* manual adjustments (credit as a new lot, debit soonest expiry first or ``INSUFFICIENT_POINTS``);
* growth over a rolling 12 local months, immediate upgrades (Silver 2,000 or 3 referrals / Gold 5,000 /
  Diamond 10,000 and a purchase in the last 90 days), the yearly review on the anniversary of the last tier
  change with its notice, 30-day grace and one step down.

Not covered (the state machine does not drive them, or does not compare them):

* birthday month (members have no profile), paid memberships (black-gold card), operator tier overrides,
  member merges, policy versions published later (one version for the whole run);
* benefits and entitlements (grants, quotas, consumption): the model neither grants nor compares them;
* the referral coupon (a benefit); the invitee's first purchase is not checked by the ledger either;
* late refunds and late holds (refunds and holds happen at the clock's time);
* the ids the ledger derives from its stream versions: lots are compared by their content in lot order.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")

# -- Little Sprout's numbers -----------------------------------------------------------------------------

POINTS_PER_CNY = Fraction(1)
CATEGORY_RATES = {"infant_formula": Fraction(1, 2)}
SKU_BONUS = {"LS-RICE-CEREAL-01": 20}
TIERS = ("regular", "silver", "gold", "diamond")
TIER_MULTIPLIER = {"regular": Fraction(1), "silver": Fraction(6, 5), "gold": Fraction(3, 2), "diamond": Fraction(2)}
TIER_MIN_GROWTH = {"regular": 0, "silver": 2000, "gold": 5000, "diamond": 10000}
SILVER_REFERRALS = 3
DIAMOND_PURCHASE_DAYS = 90
REDEMPTION_SHARE = {"regular": Fraction(1, 10), "silver": Fraction(15, 100), "gold": Fraction(1, 5), "diamond": Fraction(3, 10)}
MULTIPLIER_CAP = Fraction(3)
MEMBER_DAY = 15
CAMPAIGN_618 = (datetime(2026, 6, 1, tzinfo=TZ), datetime(2026, 6, 19, tzinfo=TZ))
WIN_BACK = (datetime(2026, 1, 1, tzinfo=TZ), datetime(2027, 1, 1, tzinfo=TZ))
WIN_BACK_DAYS = 30
PENDING_DAYS = 7
EXPIRY_MONTHS = 12
RELOT_DAYS = 30
HOLD_SECONDS = 900
OFFLINE_DAYS = 30
WINDOW_MONTHS = 12
REVIEW_MONTHS = 12
GRACE_DAYS = 30
CLOCK_SKEW = timedelta(minutes=5)

# behaviour: (points, growth, cap group, counts as a referral)
BEHAVIOURS: dict[str, tuple[int, int, str, bool]] = {
    "check_in": (1, 1, "check_in", False),
    "review": (5, 5, "reviews", False),
    "review_with_photos": (10, 10, "reviews", False),
    "offline_event": (50, 50, "events", False),
    "workshop": (100, 100, "events", False),
    "referral": (200, 200, "referrals", True),
}
# cap group: (per day, per month)
CAPS: dict[str, tuple[int | None, int | None]] = {
    "check_in": (1, None),
    "reviews": (3, 20),
    "events": (1, None),
    "referrals": (None, 10),
}


class ModelRefusal(Exception):
    """The model refuses a command; ``code`` is what the ledger's refusal must be (see ``outcome_code``)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# -- calendar, local to Asia/Shanghai --------------------------------------------------------------------------


def local(t: datetime) -> datetime:
    return t.astimezone(TZ)


def shift_months(t: datetime, n: int) -> datetime:
    """``t`` moved ``n`` months on the local calendar, same local time, day clamped to the month's length."""
    lt = local(t)
    months = lt.year * 12 + lt.month - 1 + n
    year, month = months // 12, months % 12 + 1
    day = min(lt.day, calendar.monthrange(year, month)[1])
    return lt.replace(year=year, month=month, day=day).astimezone(UTC)


def local_midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=TZ).astimezone(UTC)


def expiry_of(active_at: datetime) -> datetime:
    """End of the local month 12 months after the activation month (the first instant of the month after)."""
    lt = local(active_at)
    months = lt.year * 12 + lt.month - 1 + EXPIRY_MONTHS + 1
    return local_midnight(date(months // 12, months % 12 + 1, 1))


def local_day_bounds(t: datetime) -> tuple[datetime, datetime]:
    d = local(t).date()
    return local_midnight(d), local_midnight(d + timedelta(days=1))


def local_month_bounds(t: datetime) -> tuple[datetime, datetime]:
    d = local(t).date().replace(day=1)
    nxt = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return local_midnight(d), local_midnight(nxt)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# -- the member ------------------------------------------------------------------------------------------------


@dataclass
class MLot:
    source: str
    order_id: str | None
    amount: int
    remaining: int
    occurred_at: datetime
    active_at: datetime
    expires_at: datetime
    seq: int
    held: int = 0
    active: bool = False
    expired: bool = False

    def key(self) -> tuple[datetime, datetime, int]:
        return (self.expires_at, self.occurred_at, self.seq)

    def status(self) -> str:
        return "expired" if self.expired else "active" if self.active else "pending"


@dataclass
class MHold:
    hold_id: str
    order_id: str
    points: int
    expires_at: datetime
    allocations: list[tuple[MLot, int]]


@dataclass
class MLine:
    paid: int
    earned: int
    refunded: int = 0
    taken: int = 0


@dataclass
class MOrder:
    order_id: str
    at: datetime
    lines: dict[str, MLine]
    growth: int
    lot: MLot | None
    growth_taken: int = 0
    refunded: int = 0
    refund_ids: set[str] = field(default_factory=set)

    @property
    def paid(self) -> int:
        return sum(line.paid for line in self.lines.values())


@dataclass
class MPayment:
    """Points taken from one lot to pay an order, and how many of them came back."""

    lot: MLot
    points: int
    returned: int = 0


@dataclass
class MemberModel:
    member_id: str
    enrolled_at: datetime
    lots: list[MLot] = field(default_factory=list)
    arrears: int = 0
    holds: dict[str, MHold] = field(default_factory=dict)
    closed_holds: dict[str, str] = field(default_factory=dict)
    orders: dict[str, MOrder] = field(default_factory=dict)
    payments: dict[str, list[MPayment]] = field(default_factory=dict)
    growth: list[tuple[datetime, int]] = field(default_factory=list)
    referrals: list[datetime] = field(default_factory=list)
    behaviour_log: list[tuple[datetime, str]] = field(default_factory=list)
    awarded: set[tuple[str, str]] = field(default_factory=set)
    last_purchase: datetime | None = None
    last_activity: datetime | None = None
    tier_history: list[tuple[datetime, str]] = field(default_factory=list)
    next_review: datetime | None = None
    notice: tuple[datetime, datetime] | None = None  # (issued at, downgrade at)

    # -- balances, always summed from the lots --

    @property
    def tier(self) -> str:
        return self.tier_history[-1][1]

    @property
    def active(self) -> int:
        return sum(lot.remaining for lot in self.lots if lot.active and not lot.expired)

    @property
    def pending(self) -> int:
        return sum(lot.remaining for lot in self.lots if not lot.active and not lot.expired)

    @property
    def held(self) -> int:
        return sum(h.points for h in self.holds.values())

    @property
    def available(self) -> int:
        return self.active - self.held

    def tier_at(self, at: datetime) -> str:
        tier = self.tier_history[0][1]
        for since, code in self.tier_history:
            if since <= at:
                tier = code
        return tier

    def growth_in_window(self, end: datetime) -> int:
        start = shift_months(end, -WINDOW_MONTHS)
        return sum(amount for at, amount in self.growth if start < at <= end)

    def referrals_in_window(self, end: datetime) -> int:
        start = shift_months(end, -WINDOW_MONTHS)
        return sum(1 for at in self.referrals if start < at <= end)


class ReferenceModel:
    """Little Sprout for members on one test clock.

    A lot that points come back in after their own lot expired (a "relot") is a lot like any other: it repays
    arrears when it appears and the same refund's take-back may take from it.
    """

    def __init__(self, start: datetime) -> None:
        self.start = start  # the program's only policy takes effect here
        self.now = start
        self.members: dict[str, MemberModel] = {}
        self.seq = 0

    # -- helpers --

    def member(self, member_id: str) -> MemberModel:
        m = self.members.get(member_id)
        if m is None:
            raise ModelRefusal("NOT_FOUND:member")
        return m

    def new_lot(
        self, m: MemberModel, source: str, order_id: str | None, points: int, occurred_at: datetime,
        active_at: datetime, expires_at: datetime,
    ) -> MLot:
        self.seq += 1
        lot = MLot(source, order_id, points, points, occurred_at, active_at, expires_at, self.seq)
        m.lots.append(lot)
        if active_at <= self.now:
            self.activate(m, lot)
        return lot

    def activate(self, m: MemberModel, lot: MLot) -> None:
        """The lot becomes active: it pays the arrears first."""
        lot.active = True
        pay = min(m.arrears, lot.remaining)
        lot.remaining -= pay
        m.arrears -= pay

    @staticmethod
    def spendable(m: MemberModel) -> list[MLot]:
        lots = [lot for lot in m.lots if lot.active and not lot.expired and lot.remaining - lot.held > 0]
        return sorted(lots, key=MLot.key)

    def check_business_time(self, at: datetime) -> None:
        if at > self.now + CLOCK_SKEW:
            raise ModelRefusal("INVALID:context.occurred_at")
        if at < self.now - timedelta(days=OFFLINE_DAYS):
            raise ModelRefusal("OUTSIDE_OFFLINE_WINDOW")

    def check_policy(self, at: datetime) -> None:
        if at < self.start:
            raise ModelRefusal("POLICY_NOT_EFFECTIVE_YET")

    # -- time ------------------------------------------------------------------------------------------------

    def advance(self, to: datetime) -> None:
        assert to >= self.now
        for m in self.members.values():
            self.run_due(m, to)
        self.now = to

    def due_moments(self, m: MemberModel) -> list[datetime]:
        moments = [h.expires_at for h in m.holds.values()]
        moments += [lot.active_at for lot in m.lots if not lot.active and not lot.expired]
        moments += [lot.expires_at for lot in m.lots if lot.active and not lot.expired and lot.remaining > 0]
        if m.next_review is not None:
            moments.append(m.next_review)
        if m.notice is not None:
            moments.append(m.notice[1])
        return moments

    def run_due(self, m: MemberModel, upto: datetime) -> None:
        while True:
            moments = [t for t in self.due_moments(m) if t <= upto]
            if not moments:
                return
            t = min(moments)
            # holds time out first, then lots activate and expire (in lot order), then the tier review
            for hold_id in sorted(h.hold_id for h in m.holds.values() if h.expires_at == t):
                self.close_hold(m, hold_id, "expired")
            for lot in sorted(m.lots, key=MLot.key):
                if lot.expired:
                    continue
                if not lot.active and lot.active_at <= t:
                    self.activate(m, lot)
                elif lot.active and lot.remaining > 0 and lot.expires_at <= t:
                    lot.remaining = 0
                    lot.expired = True
            self.review(m, t)

    def qualifying(self, m: MemberModel, at: datetime, extra_growth: int = 0, extra_referrals: int = 0,
                   last_purchase: datetime | None = None) -> str:
        growth = m.growth_in_window(at) + extra_growth
        referrals = m.referrals_in_window(at) + extra_referrals
        purchase = last_purchase if last_purchase is not None else m.last_purchase
        recent = purchase is not None and at - timedelta(days=DIAMOND_PURCHASE_DAYS) < purchase <= at
        if growth >= TIER_MIN_GROWTH["diamond"] and recent:
            return "diamond"
        if growth >= TIER_MIN_GROWTH["gold"]:
            return "gold"
        if growth >= TIER_MIN_GROWTH["silver"] or referrals >= SILVER_REFERRALS:
            return "silver"
        return "regular"

    def set_tier(self, m: MemberModel, tier: str, at: datetime) -> None:
        m.tier_history.append((at, tier))
        m.next_review = None if tier == "regular" else shift_months(at, REVIEW_MONTHS)
        m.notice = None

    def review(self, m: MemberModel, t: datetime) -> None:
        rank = TIERS.index
        if m.next_review == t:
            if m.tier == "regular" or rank(self.qualifying(m, t)) >= rank(m.tier):
                m.next_review = None if m.tier == "regular" else shift_months(t, REVIEW_MONTHS)
            else:
                m.notice = (t, t + timedelta(days=GRACE_DAYS))
                m.next_review = None
        if m.notice is not None and m.notice[1] == t:
            if rank(self.qualifying(m, t)) >= rank(m.tier):
                m.next_review = shift_months(m.notice[0], REVIEW_MONTHS)
                m.notice = None
            else:
                self.set_tier(m, TIERS[rank(m.tier) - 1], t)

    def upgrade(self, m: MemberModel, at: datetime, growth: int = 0, referral: bool = False,
                purchase_at: datetime | None = None) -> None:
        """An event with business time ``at`` recorded now: upgrade at once if a threshold is crossed."""
        start = shift_months(self.now, -WINDOW_MONTHS)
        in_window = start < at <= self.now
        last = m.last_purchase
        if purchase_at is not None and (last is None or purchase_at > last):
            last = purchase_at
        tier = self.qualifying(
            m, self.now, growth if in_window else 0, 1 if referral and in_window else 0, last_purchase=last
        )
        if TIERS.index(tier) > TIERS.index(m.tier):
            self.set_tier(m, tier, self.now)

    # -- commands --------------------------------------------------------------------------------------------

    def enroll(self, member_id: str) -> None:
        m = MemberModel(member_id, self.now)
        m.tier_history.append((self.now, "regular"))
        self.members[member_id] = m

    def purchase(self, member_id: str, order_id: str, lines: list[tuple[str, str, str, int, int]],
                 at: datetime) -> int:
        """``lines``: (line id, sku, category, quantity, paid fen). Returns the points earned."""
        m = self.member(member_id)
        self.check_business_time(at)
        if order_id in m.orders:
            raise ModelRefusal("ORDER_ALREADY_RECORDED")
        self.check_policy(at)
        tier = m.tier_at(at)
        candidates = [TIER_MULTIPLIER[tier]]
        lt = local(at)
        if lt.day == MEMBER_DAY:
            candidates.append(Fraction(2))
        if CAMPAIGN_618[0] <= at < CAMPAIGN_618[1]:
            candidates.append(Fraction(2))
        last_activity = m.last_activity or m.enrolled_at
        if WIN_BACK[0] <= at < WIN_BACK[1] and at - last_activity >= timedelta(days=WIN_BACK_DAYS):
            candidates.append(Fraction(2))
        multiplier = min(max(candidates), MULTIPLIER_CAP)
        records: dict[str, MLine] = {}
        points = 0
        for line_id, sku, category, quantity, paid in lines:
            rate = CATEGORY_RATES.get(category, POINTS_PER_CNY)
            earned = math.floor(Fraction(paid) * rate * multiplier / 100) + SKU_BONUS.get(sku, 0) * quantity
            records[line_id] = MLine(paid, earned)
            points += earned
        growth = sum(line[4] for line in lines) // 100
        lot = None
        if points > 0:
            active_at = at + timedelta(days=PENDING_DAYS)
            lot = self.new_lot(m, "purchase", order_id, points, at, active_at, expiry_of(active_at))
        # the upgrade is judged before the sale's growth is recorded, with the sale counted in
        self.upgrade(m, at, growth=growth, purchase_at=at)
        m.orders[order_id] = MOrder(order_id, at, records, growth, lot)
        m.growth.append((at, growth))
        m.last_purchase = at if m.last_purchase is None else max(m.last_purchase, at)
        m.last_activity = at if m.last_activity is None else max(m.last_activity, at)
        return points

    def award(self, member_id: str, behaviour: str, reference: str, at: datetime) -> None:
        m = self.member(member_id)
        self.check_business_time(at)
        self.check_policy(at)
        if behaviour not in BEHAVIOURS:
            raise ModelRefusal("INVALID:behaviour")
        points, growth, group, is_referral = BEHAVIOURS[behaviour]
        if reference and (behaviour, reference) in m.awarded:
            raise ModelRefusal("REFERENCE_ALREADY_AWARDED")
        if is_referral:
            invitee = self.members.get(reference)
            if invitee is None or reference == member_id or not any(o.at <= at for o in invitee.orders.values()):
                raise ModelRefusal("REFERRAL_NOT_QUALIFIED")
        per_day, per_month = CAPS[group]
        for limit, (start, end) in ((per_day, local_day_bounds(at)), (per_month, local_month_bounds(at))):
            used = sum(1 for t, g in m.behaviour_log if g == group and start <= t < end)
            if limit is not None and used >= limit:
                raise ModelRefusal("BEHAVIOUR_CAP_REACHED")
        if points > 0:
            self.new_lot(m, "behaviour", None, points, at, at, expiry_of(at))
        self.upgrade(m, at, growth=growth, referral=is_referral)
        if growth:
            m.growth.append((at, growth))
        m.behaviour_log.append((at, group))
        if reference:
            m.awarded.add((behaviour, reference))
        if is_referral:
            m.referrals.append(at)
        m.last_activity = at if m.last_activity is None else max(m.last_activity, at)

    def hold(self, member_id: str, hold_id: str, order_id: str, points: int, order_total_fen: int) -> None:
        m = self.member(member_id)
        if points <= 0:
            raise ModelRefusal("INVALID:points")
        if order_total_fen <= 0:
            raise ModelRefusal("INVALID:order_total_fen")
        if hold_id in m.holds or hold_id in m.closed_holds:
            raise ModelRefusal("HOLD_EXISTS")
        tier = m.tier_at(self.now)
        cap = int(order_total_fen * REDEMPTION_SHARE[tier])  # 1 point pays 1 fen
        already = sum(h.points for h in m.holds.values() if h.order_id == order_id)
        already += sum(p.points for p in m.payments.get(order_id, []))
        if already + points > cap:
            raise ModelRefusal("REDEMPTION_CAP_EXCEEDED")
        expires_at = self.now + timedelta(seconds=HOLD_SECONDS)
        allocations: list[tuple[MLot, int]] = []
        missing = points
        for lot in self.spendable(m):
            if lot.expires_at <= expires_at:
                continue  # it would expire while held
            n = min(lot.remaining - lot.held, missing)
            if n > 0:
                allocations.append((lot, n))
                missing -= n
            if missing == 0:
                break
        if missing > 0:
            raise ModelRefusal("INSUFFICIENT_POINTS")
        for lot, n in allocations:
            lot.held += n
        m.holds[hold_id] = MHold(hold_id, order_id, points, expires_at, allocations)

    def open_hold(self, m: MemberModel, hold_id: str, commit: bool) -> MHold:
        if hold_id in m.holds:
            return m.holds[hold_id]
        status = m.closed_holds.get(hold_id)
        if status is None:
            raise ModelRefusal("NOT_FOUND:hold")
        if status == "expired" and commit:
            raise ModelRefusal("HOLD_EXPIRED")
        raise ModelRefusal("HOLD_NOT_OPEN")

    def close_hold(self, m: MemberModel, hold_id: str, status: str) -> MHold:
        h = m.holds.pop(hold_id)
        for lot, n in h.allocations:
            lot.held -= n
        m.closed_holds[hold_id] = status
        return h

    def commit(self, member_id: str, hold_id: str, points: int | None) -> None:
        m = self.member(member_id)
        h = self.open_hold(m, hold_id, commit=True)
        want = points or h.points
        if want > h.points:
            raise ModelRefusal("INSUFFICIENT_POINTS")
        self.close_hold(m, hold_id, "committed")
        left = want
        for lot, n in sorted(h.allocations, key=lambda a: a[0].key()):
            take = min(n, left)
            if take > 0:
                lot.remaining -= take
                m.payments.setdefault(h.order_id, []).append(MPayment(lot, take))
                left -= take
        assert left == 0
        m.last_activity = self.now if m.last_activity is None else max(m.last_activity, self.now)

    def release(self, member_id: str, hold_id: str) -> None:
        m = self.member(member_id)
        self.open_hold(m, hold_id, commit=False)
        self.close_hold(m, hold_id, "released")

    def adjust(self, member_id: str, points: int) -> None:
        m = self.member(member_id)
        if points == 0:
            raise ModelRefusal("INVALID:points")
        if points > 0:
            self.new_lot(m, "adjustment", None, points, self.now, self.now, expiry_of(self.now))
            return
        want = -points
        if sum(lot.remaining - lot.held for lot in self.spendable(m)) < want:
            raise ModelRefusal("INSUFFICIENT_POINTS")
        for lot in self.spendable(m):
            take = min(lot.remaining - lot.held, want)
            lot.remaining -= take
            want -= take

    def refund(self, member_id: str, order_id: str, refund_id: str, lines: list[tuple[str, int]] | None) -> None:
        """``lines``: (line id, fen refunded now); None refunds whatever is left of the whole order."""
        m = self.member(member_id)
        order = m.orders.get(order_id)
        if order is None:
            raise ModelRefusal("NOT_FOUND:order")
        if refund_id in order.refund_ids:
            raise ModelRefusal("REFUND_EXISTS")
        if lines is None:
            lines = [(lid, line.paid - line.refunded) for lid, line in order.lines.items() if line.paid > line.refunded]
            payments = m.payments.get(order_id, [])
            if not lines and order.paid == 0 and sum(p.points - p.returned for p in payments) > 0:
                lines = [(lid, 0) for lid in order.lines]  # paid only with points: refunded whole, once
            if not lines:
                raise ModelRefusal("REFUND_EXCEEDS_LINE")
        else:
            for lid, fen in lines:
                if lid not in order.lines:
                    raise ModelRefusal("NOT_FOUND:order line")
                if fen <= 0:
                    raise ModelRefusal("INVALID:refunded_fen")
                if order.lines[lid].refunded + fen > order.lines[lid].paid:
                    raise ModelRefusal("REFUND_EXCEEDS_LINE")
        order.refund_ids.add(refund_id)
        take_back = 0
        for lid, fen in lines:
            line = order.lines[lid]
            line.refunded += fen
            due = ceil_div(line.earned * line.refunded, line.paid) if line.paid else 0
            take_back += due - line.taken
            line.taken = due
        order.refunded += sum(fen for _, fen in lines)
        growth_due = ceil_div(order.growth * order.refunded, order.paid) if order.paid else 0
        growth_now = growth_due - order.growth_taken
        order.growth_taken = growth_due

        # 1. the points that paid for the order come back, latest-expiring lot first
        payments = m.payments.get(order_id, [])
        redeemed = sum(p.points for p in payments)
        if redeemed:
            returned = sum(p.returned for p in payments)
            due = redeemed if order.refunded == order.paid else redeemed * order.refunded // order.paid
            back = due - returned
            relot = 0
            for p in sorted(payments, key=lambda p: p.lot.key(), reverse=True):
                n = min(p.points - p.returned, back)
                if n <= 0:
                    continue
                p.returned += n
                back -= n
                if p.lot.expired or p.lot.expires_at <= self.now:
                    relot += n
                else:
                    p.lot.remaining += n
            assert back == 0
            if relot:
                self.new_lot(m, "refund_return", order_id, relot, self.now, self.now,
                             self.now + timedelta(days=RELOT_DAYS))

        # 2. take back what the refunded part earned: its own lot, other active lots, then arrears
        missing = take_back
        own = order.lot
        if own is not None and not own.expired and missing > 0:
            n = min(own.remaining - own.held, missing)
            if n > 0:
                own.remaining -= n
                missing -= n
        others = sorted(
            (lot for lot in m.lots
             if lot is not own and lot.active and not lot.expired
             and lot.expires_at > self.now),
            key=MLot.key,
        )
        for lot in others:
            n = min(lot.remaining - lot.held, missing)
            if n > 0:
                lot.remaining -= n
                missing -= n
        m.arrears += missing
        if growth_now:
            m.growth.append((order.at, -growth_now))
