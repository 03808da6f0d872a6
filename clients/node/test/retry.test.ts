/**
 * Retries against the live ledger through {@link FlakyProxy}: what is retried and what is not, the delays, the
 * one deadline, and that a retried write carries the same idempotency key on every attempt and is applied once.
 * Sleep, jitter and the clock are injected: nothing waits.
 */

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";

import { fromBinary } from "@bufbuild/protobuf";

import { RecordPurchaseRequestSchema } from "../gen/loyalty/v1/ledger_pb.js";
import { Code, LedgerError, LoyaltyClient, type ClientOptions } from "../src/index.js";
import { FlakyProxy } from "./flaky-proxy.js";
import { FakeTime, adminKey, posKey, programId, skip, target, unique } from "./live.js";

const WIPES = [{ lineId: "1", sku: "LS-WIPES-80", category: "wipes", quantity: 1n, paidFen: 5_000n }];

describe("retries through a proxy that fails calls", { skip }, () => {
  let proxy: FlakyProxy;
  let time: FakeTime;
  const clients: LoyaltyClient[] = [];

  before(async () => {
    proxy = await FlakyProxy.start(target);
  });
  after(async () => {
    for (const c of clients) c.close();
    await proxy.close();
  });
  beforeEach(() => {
    proxy.script = [];
    proxy.received.length = 0;
    time = new FakeTime(0.5);
  });

  function client(options: ClientOptions = {}): LoyaltyClient {
    const made = new LoyaltyClient(proxy.target, programId, {
      apiKey: posKey,
      backoffMs: 100,
      sleep: time.sleep,
      jitter: time.jitter,
      clock: time.clock,
      ...options,
    });
    clients.push(made);
    return made;
  }

  async function member(c: LoyaltyClient): Promise<string> {
    const id = unique("retry");
    await c.enroll(id);
    proxy.received.length = 0;
    return id;
  }

  function keysSent(): string[] {
    return proxy.received
      .filter((r) => r.path.endsWith("/RecordPurchase"))
      .map((r) => fromBinary(RecordPurchaseRequestSchema, r.body).idempotencyKey);
  }

  test("UNAVAILABLE twice, then the answer: three attempts, one key, delays of full jitter doubling", async () => {
    const c = client();
    const id = await member(c);
    proxy.script = ["unavailable", "unavailable"];
    const bought = await c.recordPurchase(id, unique("A"), WIPES, { orderTotalFen: 5_000 });
    assert.equal(c.attempts, 3);
    assert.equal(bought.replayed, false);
    assert.deepEqual(time.slept, [50, 100]);
    const keys = keysSent();
    assert.equal(keys.length, 3);
    assert.equal(new Set(keys).size, 1, `one idempotency key on every attempt, got ${keys.join(", ")}`);
    assert.ok(keys[0]);
    assert.ok(proxy.received.every((r) => r.authorization === `Bearer ${posKey}`));
  });

  test("a caller's idempotency key is the one sent on every attempt", async () => {
    const c = client();
    const id = await member(c);
    const key = unique("till-receipt");
    proxy.script = ["aborted"];
    await c.recordPurchase(id, unique("A"), WIPES, { orderTotalFen: 5_000, idempotencyKey: key });
    assert.equal(c.attempts, 2);
    assert.deepEqual(keysSent(), [key, key]);
  });

  test("an answer lost after the write: the retry gets the first answer, the points are earned once", async () => {
    const c = client();
    const id = await member(c);
    proxy.script = ["lost"];
    const bought = await c.recordPurchase(id, unique("A"), WIPES, { orderTotalFen: 5_000 });
    assert.equal(c.attempts, 2);
    assert.equal(bought.replayed, true, "the second attempt is answered from the first");
    const keys = keysSent();
    assert.equal(keys.length, 2);
    assert.equal(keys[0], keys[1]);
    const direct = new LoyaltyClient(target, programId, { apiKey: adminKey });
    clients.push(direct);
    const balance = await direct.getBalance(id);
    assert.equal(balance.pending, bought.pointsEarned);
    assert.ok(bought.pointsEarned > 0n);
  });

  test("RESOURCE_EXHAUSTED without RetryInfo is not retried", async () => {
    const c = client();
    const id = await member(c);
    proxy.script = ["exhausted"];
    await assert.rejects(c.getBalance(id), (err: unknown) => {
      assert.ok(err instanceof LedgerError);
      assert.equal(err.code, Code.ResourceExhausted);
      assert.equal(err.codeName, "RESOURCE_EXHAUSTED");
      return true;
    });
    assert.equal(c.attempts, 1);
    assert.deepEqual(time.slept, []);
  });

  test("RESOURCE_EXHAUSTED with RetryInfo waits at least what the server asks", async () => {
    const c = client();
    const id = await member(c);
    proxy.script = ["rate_limited"];
    const balance = await c.getBalance(id);
    assert.equal(balance.memberId, id);
    assert.equal(c.attempts, 2);
    assert.deepEqual(time.slept, [250]);
  });

  test("the last failure is thrown once the retries are spent", async () => {
    const c = client({ retries: 2 });
    const id = await member(c);
    proxy.script = ["unavailable", "unavailable", "unavailable", "unavailable"];
    await assert.rejects(c.getBalance(id), (err: unknown) => {
      assert.ok(err instanceof LedgerError);
      assert.equal(err.code, Code.Unavailable);
      assert.equal(err.rawMessage, "the proxy is restarting");
      return true;
    });
    assert.equal(c.attempts, 3);
    assert.deepEqual(time.slept, [50, 100]);
  });

  test("no retry starts that could not finish within the one deadline", async () => {
    const c = client({ timeoutMs: 120 });
    const id = await member(c);
    proxy.script = ["unavailable", "unavailable", "unavailable"];
    await assert.rejects(c.getBalance(id), (err: unknown) => err instanceof LedgerError && err.code === Code.Unavailable);
    // 50 ms then 100 ms: the second delay would end past the 120 ms deadline (50 already spent), so it is not made.
    assert.equal(c.attempts, 2);
    assert.deepEqual(time.slept, [50]);
  });

  test("a business refusal is not retried", async () => {
    const c = client();
    const id = await member(c);
    await assert.rejects(c.holdPoints(id, unique("H"), 500, unique("T"), 20_000), (err: unknown) => {
      assert.ok(err instanceof LedgerError);
      assert.equal(err.reason, "INSUFFICIENT_POINTS");
      return true;
    });
    assert.equal(c.attempts, 1);
    assert.equal(proxy.received.length, 1);
  });
});
