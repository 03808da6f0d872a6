/**
 * Walk one member of the reference program through enrol, buy, redeem at a till, refund and replay: the story
 * of the repository's README, as the Python client's example tells it.
 *
 * Against a live server, with an admin key (the replay needs an auditor or admin key):
 *   LEDGER_API_KEY=$(cat var/admin.key) node dist/examples/till.js --target 127.0.0.1:50051
 * Over TLS add --tls-ca ca.pem (and --tls-cert till.pem --tls-key till.key for mutual TLS).
 */

import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

import { LedgerError, LoyaltyClient, type TlsOptions } from "../src/index.js";

function iso(value: Timestamp | undefined): string {
  return value === undefined ? "-" : timestampDate(value).toISOString();
}

function signed(value: bigint): string {
  return value >= 0n ? `+${value}` : `${value}`;
}

export async function run(target: string, programId: string, tls?: TlsOptions): Promise<number> {
  const suffix = randomUUID().replaceAll("-", "").slice(0, 8);
  const memberId = `example-${suffix}`;
  const card = `CARD-${suffix}`;
  const client = new LoyaltyClient(target, programId, tls ? { tls } : {});
  try {
    const enrolled = await client.enroll(memberId, { cardNumber: card });
    console.log(`enrolled ${enrolled.memberId} tier=${enrolled.tier} policy_version=${enrolled.policyVersion}`);
    const found = await client.lookup(card);
    console.log(`lookup ${card} -> ${found.memberId}`);

    const orderId = `A-${suffix}`;
    const bought = await client.recordPurchase(
      memberId,
      orderId,
      [
        { lineId: "1", sku: "LS-FORMULA-900G", category: "infant_formula", quantity: 1n, paidFen: 10_000n },
        { lineId: "2", sku: "LS-WIPES-80", category: "wipes", quantity: 2n, paidFen: 5_000n },
      ],
      { orderTotalFen: 15_000 },
    );
    console.log(`purchase ${orderId}: +${bought.pointsEarned} points (pending until ${iso(bought.activeAt)})`);

    const checkedIn = await client.award(memberId, "check_in", { reference: `checkin-${suffix}` });
    console.log(`check_in: +${checkedIn.points} points`);
    let bal = await client.getBalance(memberId);
    console.log(`balance active=${bal.active} pending=${bal.pending} held=${bal.held} available=${bal.available}`);

    const tillOrder = `T-${suffix}`;
    const till = { storeId: "S-1", terminalId: "T-1" };
    try {
      await client.holdPoints(memberId, `H-${suffix}-0`, 500, tillOrder, 20_000, till);
    } catch (err) {
      if (!(err instanceof LedgerError)) throw err;
      const metadata = Object.entries(err.metadata).sort(([a], [b]) => a.localeCompare(b));
      console.log(`hold 500 refused: ${err.codeName} ${err.reason} ${JSON.stringify(metadata)}`);
    }

    const adjusted = await client.adjustPoints(memberId, 1_000, "GOODWILL", "op-example", "example credit");
    console.log(`operator credit: +${adjusted.points} available=${adjusted.balanceAfter?.available}`);

    const held = await client.holdPoints(memberId, `H-${suffix}-1`, 500, tillOrder, 20_000, till);
    console.log(
      `hold ${held.holdId}: ${held.heldPoints} points = ${held.cashValueFen} fen, available ${held.availableAfter}`,
    );
    const committed = await client.commitHold(memberId, held.holdId);
    console.log(
      `commit ${committed.holdId}: ${committed.committedPoints} points, available ${committed.availableAfter}`,
    );

    const toRelease = await client.holdPoints(memberId, `H-${suffix}-2`, 100, `U-${suffix}`, 20_000);
    const released = await client.releaseHold(memberId, toRelease.holdId);
    console.log(
      `release ${released.holdId}: ${released.releasedPoints} points back, available ${released.availableAfter}`,
    );

    const refunded = await client.refundPurchase(memberId, orderId, `R-${suffix}`);
    console.log(`refund ${orderId}: ${refunded.refundedFen} fen, ${refunded.pointsTakenBack} points taken back`);

    bal = await client.getBalance(memberId);
    console.log(`balance active=${bal.active} pending=${bal.pending} held=${bal.held} available=${bal.available}`);

    const events = await client.replayMember(memberId);
    console.log(`replay ${memberId}: ${events.length} events`);
    for (const event of events) {
      const after = event.balanceAfter;
      console.log(
        `replay v${event.version} ${event.eventType} delta=${signed(event.pointsDelta)} ` +
          `active=${after?.active} pending=${after?.pending} held=${after?.held} :: ${event.summary}`,
      );
    }
  } finally {
    client.close();
  }
  return 0;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      target: { type: "string", default: "127.0.0.1:50051" },
      program: { type: "string", default: "little_sprout" },
      "tls-ca": { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
    },
  });
  const tls: TlsOptions | undefined = values["tls-ca"]
    ? {
        ca: readFileSync(values["tls-ca"]),
        ...(values["tls-cert"] ? { cert: readFileSync(values["tls-cert"]) } : {}),
        ...(values["tls-key"] ? { key: readFileSync(values["tls-key"]) } : {}),
      }
    : undefined;
  return run(values.target, values.program, tls);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof LedgerError ? `refused: ${err.message}` : err);
    process.exitCode = 1;
  },
);
