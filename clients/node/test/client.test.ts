/**
 * The client against the live ledger: the typed refusals with their reason codes and metadata as the server
 * sends them (docs/errors.md), idempotency, and the queries.
 */

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

import { Code, LedgerError, LoyaltyClient, member as memberPb } from "../src/index.js";
import { adminKey, posKey, programId, skip, target, unique } from "./live.js";

const WIPES = [{ lineId: "1", sku: "LS-WIPES-80", category: "wipes", quantity: 2n, paidFen: 5_000n }];

function refusal(check: (err: LedgerError) => void): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof LedgerError, `a LedgerError, got ${String(err)}`);
    check(err);
    return true;
  };
}

describe("the client on a live ledger", { skip }, () => {
  const clients: LoyaltyClient[] = [];
  function client(apiKey: string): LoyaltyClient {
    const made = new LoyaltyClient(target, programId, { apiKey });
    clients.push(made);
    return made;
  }
  after(() => clients.forEach((c) => c.close()));

  test("a hold beyond the balance: FAILED_PRECONDITION, INSUFFICIENT_POINTS with available and requested", async () => {
    const till = client(posKey);
    const id = unique("m");
    await till.enroll(id);
    await assert.rejects(
      till.holdPoints(id, unique("H"), 500, unique("T"), 20_000, { storeId: "S-1", terminalId: "T-1" }),
      refusal((err) => {
        assert.equal(err.code, Code.FailedPrecondition);
        assert.equal(err.codeName, "FAILED_PRECONDITION");
        assert.equal(err.reason, "INSUFFICIENT_POINTS");
        assert.equal(err.domain, "loyalty.v1");
        assert.deepEqual(err.metadata, { available: "0", requested: "500" });
        assert.match(err.message, /^FAILED_PRECONDITION INSUFFICIENT_POINTS: /);
      }),
    );
    assert.equal(till.attempts, 1);
  });

  test("a bad field: INVALID_ARGUMENT with the field's path in fieldViolations", async () => {
    const till = client(posKey);
    const id = unique("m");
    await till.enroll(id);
    const line = { lineId: "1", sku: "LS-WIPES-80", category: "wipes", quantity: 1n, paidFen: -1n };
    await assert.rejects(
      till.recordPurchase(id, unique("A"), [line], { orderTotalFen: 5_000 }),
      refusal((err) => {
        assert.equal(err.code, Code.InvalidArgument);
        assert.ok("lines[0].paid_fen" in err.fieldViolations, JSON.stringify(err.fieldViolations));
        assert.notEqual(err.reason, "");
      }),
    );
  });

  test("a till's key may not replay: PERMISSION_DENIED naming the permission and the role", async () => {
    const till = client(posKey);
    const id = unique("m");
    await till.enroll(id);
    await assert.rejects(
      till.replayMember(id),
      refusal((err) => {
        assert.equal(err.code, Code.PermissionDenied);
        assert.equal(err.reason, "PERMISSION_DENIED");
        assert.equal(err.metadata["permission"], "audit.read");
        assert.equal(err.metadata["role"], "pos");
      }),
    );
  });

  test("an unknown key: UNAUTHENTICATED, not retried", async () => {
    const stranger = client("not-a-key");
    await assert.rejects(
      stranger.getBalance("nobody"),
      refusal((err) => {
        assert.equal(err.code, Code.Unauthenticated);
        assert.equal(err.reason, "UNAUTHENTICATED");
        assert.ok(!err.message.includes("not-a-key"), "the key is not echoed");
      }),
    );
    assert.equal(stranger.attempts, 1);
  });

  test("an unknown member: NOT_FOUND, MEMBER_NOT_FOUND", async () => {
    await assert.rejects(
      client(posKey).getBalance(unique("nobody")),
      refusal((err) => {
        assert.equal(err.code, Code.NotFound);
        assert.equal(err.reason, "MEMBER_NOT_FOUND");
      }),
    );
  });

  test("the same key and request: the first answer again; the same key and another request: refused", async () => {
    const till = client(posKey);
    const id = unique("m");
    await till.enroll(id);
    const key = unique("receipt");
    const order = unique("A");
    const first = await till.recordPurchase(id, order, WIPES, { orderTotalFen: 10_000, idempotencyKey: key });
    const again = await till.recordPurchase(id, order, WIPES, { orderTotalFen: 10_000, idempotencyKey: key });
    assert.equal(first.replayed, false);
    assert.equal(again.replayed, true);
    assert.equal(again.lotId, first.lotId);
    assert.equal(again.pointsEarned, first.pointsEarned);
    await assert.rejects(
      till.recordPurchase(id, unique("B"), WIPES, { orderTotalFen: 10_000, idempotencyKey: key }),
      refusal((err) => {
        assert.equal(err.code, Code.AlreadyExists);
        assert.equal(err.reason, "IDEMPOTENCY_KEY_REUSED");
      }),
    );
    const balance = await till.getBalance(id);
    assert.equal(balance.pending, first.pointsEarned, "earned once");
  });

  test("points must be integers", async () => {
    const till = client(posKey);
    await assert.rejects(till.holdPoints("m", "H", 1.5, "T", 100), RangeError);
  });

  test("what is not an rpc's failure is thrown as it is, and not retried", async () => {
    const till = client(posKey);
    await assert.rejects(
      till.call(async () => {
        throw new TypeError("a bug in the caller");
      }),
      TypeError,
    );
    assert.equal(till.attempts, 1);
  });

  test("lots, history and tier after a purchase", async () => {
    const till = client(posKey);
    const id = unique("m");
    await till.enroll(id, { cardNumber: unique("CARD") });
    const bought = await till.recordPurchase(id, unique("A"), WIPES, { orderTotalFen: 10_000 });
    const lots = await till.listLots(id);
    assert.equal(lots.lots.length, 1);
    assert.equal(lots.lots[0]?.lotId, bought.lotId);
    assert.equal(lots.lots[0]?.status, memberPb.LotStatus.PENDING);
    const history = await till.listHistory(id);
    assert.ok(history.entries.length >= 2, `enrolment and purchase, got ${history.entries.length}`);
    const tier = await till.getTierState(id);
    assert.equal(tier.tier, "regular");
    const admin = client(adminKey);
    const events = await admin.replayMember(id);
    assert.deepEqual(
      events.map((e) => e.eventType),
      ["MemberEnrolled", "PurchaseRecorded"],
    );
  });
});
