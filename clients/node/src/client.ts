/**
 * A typed client for one program of the loyalty ledger, over real gRPC (HTTP/2) with Connect.
 *
 * Every write takes an idempotency key (the caller's, or a fresh UUID made once per call) and sends it unchanged
 * on every attempt, so a retried command is applied at most once. Each call has one deadline (`timeoutMs`) for
 * all its attempts: an attempt gets only the time left, and no retry starts that could not finish before it.
 * What {@link retryDelayMs} allows is retried at most `retries` more times; any other failure, and the last
 * one, is thrown as a {@link LedgerError}.
 */

import { randomUUID } from "node:crypto";
import { setTimeout as sleepFor } from "node:timers/promises";

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient, type CallOptions, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import { AuditService, ReplayMemberRequestSchema, type ReplayedEvent } from "../gen/loyalty/v1/audit_pb.js";
import { Channel, ChannelIdentitySchema, IdentityKind, RequestContextSchema } from "../gen/loyalty/v1/common_pb.js";
import {
  AdjustPointsRequestSchema,
  AwardPointsRequestSchema,
  CommitHoldRequestSchema,
  EnrollMemberRequestSchema,
  HoldPointsRequestSchema,
  LedgerService,
  OrderLineSchema,
  RecordPurchaseRequestSchema,
  RefundLineSchema,
  RefundPurchaseRequestSchema,
  ReleaseHoldRequestSchema,
  type AdjustPointsResponse,
  type AwardPointsResponse,
  type CommitHoldResponse,
  type EnrollMemberResponse,
  type HoldPointsResponse,
  type RecordPurchaseResponse,
  type RefundPurchaseResponse,
  type ReleaseHoldResponse,
} from "../gen/loyalty/v1/ledger_pb.js";
import type { Balance, LotStatus, TierState } from "../gen/loyalty/v1/member_pb.js";
import {
  GetBalanceRequestSchema,
  GetTierStateRequestSchema,
  ListHistoryRequestSchema,
  ListLotsRequestSchema,
  LookupMemberRequestSchema,
  MemberQueryService,
  type ListHistoryResponse,
  type ListLotsResponse,
  type LookupMemberResponse,
} from "../gen/loyalty/v1/query_pb.js";
import { LedgerError } from "./errors.js";
import { retryDelayMs } from "./retry.js";

/** Points and fen are integers: a bigint, or a number that is a safe integer (1.5 is refused). */
export type Int = bigint | number;

export type OrderLineInit = MessageInitShape<typeof OrderLineSchema>;
export type RefundLineInit = MessageInitShape<typeof RefundLineSchema>;

export interface TlsOptions {
  /** PEM of the CA to trust (default: the system's roots). */
  ca?: string | Buffer;
  /** For mutual TLS: the client certificate (PEM) and its private key. */
  cert?: string | Buffer;
  key?: string | Buffer;
}

export interface ClientOptions {
  /** Sent as `authorization: Bearer <key>` on every call; default `$LEDGER_API_KEY`; "" sends none. */
  apiKey?: string;
  /** Each call's one deadline, for all its attempts together (default 5000 ms). */
  timeoutMs?: number;
  /** Attempts after the first (default 3). */
  retries?: number;
  /** The first retry's longest delay, doubled for each next one (default 50 ms). */
  backoffMs?: number;
  /** TLS (or mutual TLS); default plaintext. */
  tls?: TlsOptions;
  /** Replaceable, e.g. by tests so nothing waits: how to wait, a number in [0, 1), monotonic milliseconds. */
  sleep?: (ms: number) => Promise<void>;
  jitter?: () => number;
  clock?: () => number;
}

function int(value: Int, field: string): bigint {
  if (typeof value === "bigint") return value;
  if (!Number.isSafeInteger(value)) throw new RangeError(`${field} must be an integer, got ${value}`);
  return BigInt(value);
}

function baseUrl(target: string, tls: boolean): string {
  return /^https?:\/\//.test(target) ? target : `${tls ? "https" : "http"}://${target}`;
}

interface Context {
  channel?: Channel;
  storeId?: string;
  terminalId?: string;
  operatorId?: string;
  occurredAt?: Date;
}

export class LoyaltyClient {
  readonly programId: string;
  readonly timeoutMs: number;
  readonly retries: number;
  readonly backoffMs: number;
  /** How many attempts the last call made. */
  attempts = 0;
  /** The generated Connect clients, for the rpcs this class has no method for; wrap their calls in
   * {@link call} to get the retries, the deadline and {@link LedgerError}. */
  readonly ledger: Client<typeof LedgerService>;
  readonly query: Client<typeof MemberQueryService>;
  readonly audit: Client<typeof AuditService>;

  private readonly sessions: Http2SessionManager;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly jitter: () => number;
  private readonly clock: () => number;

  /** `target`: `host:port` (or a URL, `https://...` for TLS) of the ledger; `programId`: the program. */
  constructor(target: string, programId: string, options: ClientOptions = {}) {
    this.programId = programId;
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.retries = options.retries ?? 3;
    this.backoffMs = options.backoffMs ?? 50;
    this.sleep = options.sleep ?? ((ms) => sleepFor(ms));
    this.jitter = options.jitter ?? Math.random;
    this.clock = options.clock ?? (() => performance.now());
    const key = options.apiKey ?? process.env["LEDGER_API_KEY"] ?? "";
    const url = baseUrl(target, options.tls !== undefined);
    this.sessions = new Http2SessionManager(url, undefined, options.tls ? { ...options.tls } : undefined);
    const interceptors: Interceptor[] = key
      ? [
          (next) => (req) => {
            req.header.set("authorization", `Bearer ${key}`);
            return next(req);
          },
        ]
      : [];
    const transport = createGrpcTransport({ baseUrl: url, sessionManager: this.sessions, interceptors });
    this.ledger = createClient(LedgerService, transport);
    this.query = createClient(MemberQueryService, transport);
    this.audit = createClient(AuditService, transport);
  }

  /** Close the connection (the process can then exit). */
  close(): void {
    this.sessions.abort();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** A fresh idempotency key. */
  static newKey(): string {
    return randomUUID();
  }

  /** `fn(options)` until it answers, retrying what {@link retryDelayMs} allows within the one deadline; each
   * attempt's `timeoutMs` is the time left. An rpc's failure is thrown as {@link LedgerError}; anything else
   * `fn` throws (not a ConnectError) is thrown as it is, at once. */
  async call<T>(fn: (options: CallOptions) => Promise<T>): Promise<T> {
    const deadline = this.clock() + this.timeoutMs;
    this.attempts = 0;
    for (;;) {
      this.attempts += 1;
      try {
        return await fn({ timeoutMs: Math.max(1, Math.ceil(deadline - this.clock())) });
      } catch (err) {
        if (!(err instanceof ConnectError)) throw err; // not an rpc's failure: a bug of the caller, as it is
        const delay = retryDelayMs(err, this.attempts - 1, this.backoffMs, this.jitter());
        const left = deadline - this.clock();
        if (delay === undefined || this.attempts > this.retries || delay >= left) throw LedgerError.from(err);
        await this.sleep(delay);
      }
    }
  }

  private context(ctx: Context, fallback: Channel) {
    return create(RequestContextSchema, {
      channel: ctx.channel ?? fallback,
      storeId: ctx.storeId ?? "",
      terminalId: ctx.terminalId ?? "",
      operatorId: ctx.operatorId ?? "",
      ...(ctx.occurredAt ? { occurredAt: timestampFromDate(ctx.occurredAt) } : {}),
    });
  }

  // -- members -------------------------------------------------------------------------------------------

  async enroll(
    memberId = "",
    options: { cardNumber?: string; idempotencyKey?: string } = {},
  ): Promise<EnrollMemberResponse> {
    const req = create(EnrollMemberRequestSchema, {
      programId: this.programId,
      idempotencyKey: options.idempotencyKey ?? LoyaltyClient.newKey(),
      memberId,
      identities: options.cardNumber
        ? [create(ChannelIdentitySchema, { kind: IdentityKind.CARD_NUMBER, value: options.cardNumber })]
        : [],
    });
    return this.call((o) => this.ledger.enrollMember(req, o));
  }

  async lookup(value: string, kind: IdentityKind = IdentityKind.CARD_NUMBER): Promise<LookupMemberResponse> {
    const req = create(LookupMemberRequestSchema, {
      programId: this.programId,
      identity: { kind, value },
    });
    return this.call((o) => this.query.lookupMember(req, o));
  }

  /** The member's balance now; `minVersion`: at least as new as a write that returned that `memberVersion`;
   * `asOf` / `asKnownAt`: as it was at a business time, as recorded by a time. */
  async getBalance(
    memberId: string,
    options: { minVersion?: Int; asOf?: Date; asKnownAt?: Date } = {},
  ): Promise<Balance> {
    const req = create(GetBalanceRequestSchema, {
      programId: this.programId,
      memberId,
      minVersion: int(options.minVersion ?? 0, "minVersion"),
      ...(options.asOf ? { asOf: timestampFromDate(options.asOf) } : {}),
      ...(options.asKnownAt ? { asKnownAt: timestampFromDate(options.asKnownAt) } : {}),
    });
    const answer = await this.call((o) => this.query.getBalance(req, o));
    if (answer.balance === undefined) throw new Error("GetBalance answered without a balance");
    return answer.balance;
  }

  /** One page of the member's lots (`statuses` empty: all), oldest first. */
  async listLots(
    memberId: string,
    options: { statuses?: LotStatus[]; pageSize?: number; pageToken?: string; asOf?: Date } = {},
  ): Promise<ListLotsResponse> {
    const req = create(ListLotsRequestSchema, {
      programId: this.programId,
      memberId,
      statuses: options.statuses ?? [],
      pageSize: options.pageSize ?? 0,
      pageToken: options.pageToken ?? "",
      ...(options.asOf ? { asOf: timestampFromDate(options.asOf) } : {}),
    });
    return this.call((o) => this.query.listLots(req, o));
  }

  /** One page of the member's history, newest first. */
  async listHistory(
    memberId: string,
    options: { pageSize?: number; pageToken?: string } = {},
  ): Promise<ListHistoryResponse> {
    const req = create(ListHistoryRequestSchema, {
      programId: this.programId,
      memberId,
      pageSize: options.pageSize ?? 0,
      pageToken: options.pageToken ?? "",
    });
    return this.call((o) => this.query.listHistory(req, o));
  }

  async getTierState(memberId: string, options: { asOf?: Date } = {}): Promise<TierState> {
    const req = create(GetTierStateRequestSchema, {
      programId: this.programId,
      memberId,
      ...(options.asOf ? { asOf: timestampFromDate(options.asOf) } : {}),
    });
    const answer = await this.call((o) => this.query.getTierState(req, o));
    if (answer.tierState === undefined) throw new Error("GetTierState answered without a tier state");
    return answer.tierState;
  }

  // -- earning and spending ------------------------------------------------------------------------------

  async recordPurchase(
    memberId: string,
    orderId: string,
    lines: OrderLineInit[],
    options: Context & {
      orderTotalFen?: Int;
      pointsPaid?: Int;
      holdId?: string;
      idempotencyKey?: string;
    } = {},
  ): Promise<RecordPurchaseResponse> {
    const req = create(RecordPurchaseRequestSchema, {
      programId: this.programId,
      idempotencyKey: options.idempotencyKey ?? LoyaltyClient.newKey(),
      context: this.context(options, Channel.POS),
      memberId,
      orderId,
      lines: lines.map((line) => create(OrderLineSchema, line)),
      orderTotalFen: int(options.orderTotalFen ?? 0, "orderTotalFen"),
      pointsPaid: int(options.pointsPaid ?? 0, "pointsPaid"),
      holdId: options.holdId ?? "",
    });
    return this.call((o) => this.ledger.recordPurchase(req, o));
  }

  async award(
    memberId: string,
    behaviour: string,
    options: Context & { reference?: string; idempotencyKey?: string } = {},
  ): Promise<AwardPointsResponse> {
    const req = create(AwardPointsRequestSchema, {
      programId: this.programId,
      idempotencyKey: options.idempotencyKey ?? LoyaltyClient.newKey(),
      context: this.context(options, Channel.APP),
      memberId,
      behaviour,
      reference: options.reference ?? "",
    });
    return this.call((o) => this.ledger.awardPoints(req, o));
  }

  /** An operator's correction (an operator or admin key); the server requires a `note` saying why. */
  async adjustPoints(
    memberId: string,
    points: Int,
    reasonCode: string,
    operatorId: string,
    note: string,
    options: { allowArrears?: boolean; idempotencyKey?: string } = {},
  ): Promise<AdjustPointsResponse> {
    const req = create(AdjustPointsRequestSchema, {
      programId: this.programId,
      idempotencyKey: options.idempotencyKey ?? LoyaltyClient.newKey(),
      context: this.context({ operatorId }, Channel.OPERATOR_CONSOLE),
      memberId,
      points: int(points, "points"),
      reasonCode,
      note,
      allowArrears: options.allowArrears ?? false,
    });
    return this.call((o) => this.ledger.adjustPoints(req, o));
  }

  async holdPoints(
    memberId: string,
    holdId: string,
    points: Int,
    orderId: string,
    orderTotalFen: Int,
    options: Context & { ttlSeconds?: number; idempotencyKey?: string } = {},
  ): Promise<HoldPointsResponse> {
    const req = create(HoldPointsRequestSchema, {
      programId: this.programId,
      idempotencyKey: options.idempotencyKey ?? LoyaltyClient.newKey(),
      context: this.context(options, Channel.POS),
      memberId,
      holdId,
      points: int(points, "points"),
      orderId,
      orderTotalFen: int(orderTotalFen, "orderTotalFen"),
      ttlSeconds: options.ttlSeconds ?? 0,
    });
    return this.call((o) => this.ledger.holdPoints(req, o));
  }

  /** Spend a hold; `points` 0 (the default): all it reserved. */
  async commitHold(
    memberId: string,
    holdId: string,
    options: Context & { points?: Int; idempotencyKey?: string } = {},
  ): Promise<CommitHoldResponse> {
    const req = create(CommitHoldRequestSchema, {
      programId: this.programId,
      idempotencyKey: options.idempotencyKey ?? LoyaltyClient.newKey(),
      context: this.context(options, Channel.POS),
      memberId,
      holdId,
      points: int(options.points ?? 0, "points"),
    });
    return this.call((o) => this.ledger.commitHold(req, o));
  }

  async releaseHold(
    memberId: string,
    holdId: string,
    options: Context & { idempotencyKey?: string } = {},
  ): Promise<ReleaseHoldResponse> {
    const req = create(ReleaseHoldRequestSchema, {
      programId: this.programId,
      idempotencyKey: options.idempotencyKey ?? LoyaltyClient.newKey(),
      context: this.context(options, Channel.POS),
      memberId,
      holdId,
    });
    return this.call((o) => this.ledger.releaseHold(req, o));
  }

  /** Refund the whole order (the default), or with `lines` (and `wholeOrder: false`) part of it. */
  async refundPurchase(
    memberId: string,
    orderId: string,
    refundId: string,
    options: Context & { wholeOrder?: boolean; lines?: RefundLineInit[]; idempotencyKey?: string } = {},
  ): Promise<RefundPurchaseResponse> {
    const req = create(RefundPurchaseRequestSchema, {
      programId: this.programId,
      idempotencyKey: options.idempotencyKey ?? LoyaltyClient.newKey(),
      context: this.context(options, Channel.POS),
      memberId,
      orderId,
      refundId,
      wholeOrder: options.wholeOrder ?? (options.lines === undefined || options.lines.length === 0),
      lines: (options.lines ?? []).map((line) => create(RefundLineSchema, line)),
    });
    return this.call((o) => this.ledger.refundPurchase(req, o));
  }

  // -- audit ---------------------------------------------------------------------------------------------

  /** Every event of the member after `afterVersion`, oldest first (the streamed pages, concatenated; an
   * auditor or admin key). */
  async replayMember(memberId: string, options: { afterVersion?: Int; pageSize?: number } = {}): Promise<ReplayedEvent[]> {
    const req = create(ReplayMemberRequestSchema, {
      programId: this.programId,
      memberId,
      afterVersion: int(options.afterVersion ?? 0, "afterVersion"),
      pageSize: options.pageSize ?? 0,
    });
    return this.call(async (o) => {
      const events: ReplayedEvent[] = [];
      for await (const page of this.audit.replayMember(req, o)) events.push(...page.events);
      return events;
    });
  }
}
