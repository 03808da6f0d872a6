/**
 * A refusal of the ledger as a typed error: the gRPC status code, the ErrorInfo reason and its metadata, the
 * BadRequest field violations and the RetryInfo delay, decoded from the `grpc-status-details-bin` trailer
 * (docs/errors.md). Write code against `code` and `reason`, never the message text.
 */

import { Code, ConnectError } from "@connectrpc/connect";

import {
  BadRequestSchema,
  ErrorInfoSchema,
  RequestInfoSchema,
  RetryInfoSchema,
} from "../gen/google/rpc/error_details_pb.js";

export { Code };

/** The gRPC name of a status code, as the server's docs spell it: `FAILED_PRECONDITION`, `CANCELLED`. */
export function codeName(code: Code): string {
  if (code === Code.Canceled) return "CANCELLED";
  const name = Code[code];
  return name === undefined ? `CODE_${code}` : name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** The delay the server asked for in `google.rpc.RetryInfo` (a rate limit, a full write queue), in ms; else 0. */
export function askedDelayMs(err: ConnectError): number {
  for (const info of err.findDetails(RetryInfoSchema)) {
    const delay = info.retryDelay;
    if (delay !== undefined) return Number(delay.seconds) * 1000 + delay.nanos / 1e6;
  }
  return 0;
}

export class LedgerError extends Error {
  override readonly name = "LedgerError";
  /** The gRPC status code (numbered as gRPC numbers them: `Code.FailedPrecondition` is 9). */
  readonly code: Code;
  /** The ErrorInfo reason (`INSUFFICIENT_POINTS`, `IDEMPOTENCY_KEY_REUSED`, ...); `BAD_REQUEST` for field
   * violations without an ErrorInfo; "" when the server sent none (UNAVAILABLE, DEADLINE_EXCEEDED). */
  readonly reason: string;
  /** The ErrorInfo domain (`loyalty.v1`), "" without an ErrorInfo. */
  readonly domain: string;
  /** The ErrorInfo metadata: the numbers that explain the reason, as strings (`available`, `requested`). */
  readonly metadata: Readonly<Record<string, string>>;
  /** BadRequest field violations: the field's path in the request (`lines[0].paid_fen`) to its description. */
  readonly fieldViolations: Readonly<Record<string, string>>;
  /** What RetryInfo asked the caller to wait, in ms (0: none). */
  readonly retryDelayMs: number;
  /** RequestInfo's request id: an INTERNAL error's id, also in the server's log. */
  readonly requestId: string;
  /** The server's message for people, without the code prefix. */
  readonly rawMessage: string;

  constructor(fields: {
    code: Code;
    reason: string;
    domain?: string;
    metadata?: Record<string, string>;
    fieldViolations?: Record<string, string>;
    retryDelayMs?: number;
    requestId?: string;
    message: string;
    cause?: unknown;
  }) {
    super(`${codeName(fields.code)} ${fields.reason}: ${fields.message}`, { cause: fields.cause });
    this.code = fields.code;
    this.reason = fields.reason;
    this.domain = fields.domain ?? "";
    this.metadata = { ...(fields.metadata ?? {}) };
    this.fieldViolations = { ...(fields.fieldViolations ?? {}) };
    this.retryDelayMs = fields.retryDelayMs ?? 0;
    this.requestId = fields.requestId ?? "";
    this.rawMessage = fields.message;
  }

  /** The gRPC name of {@link code}: `FAILED_PRECONDITION`. */
  get codeName(): string {
    return codeName(this.code);
  }

  /** The refusal a failed call carries. Anything not a {@link ConnectError} (or a LedgerError) is wrapped as
   * UNKNOWN. */
  static from(err: unknown): LedgerError {
    if (err instanceof LedgerError) return err;
    const connect = ConnectError.from(err);
    let reason = "";
    let domain = "";
    const metadata: Record<string, string> = {};
    const violations: Record<string, string> = {};
    let requestId = "";
    for (const info of connect.findDetails(ErrorInfoSchema)) {
      reason = info.reason;
      domain = info.domain;
      Object.assign(metadata, info.metadata);
    }
    for (const bad of connect.findDetails(BadRequestSchema)) {
      for (const v of bad.fieldViolations) violations[v.field] = v.description;
    }
    for (const info of connect.findDetails(RequestInfoSchema)) requestId = info.requestId;
    if (reason === "" && Object.keys(violations).length > 0) reason = "BAD_REQUEST";
    return new LedgerError({
      code: connect.code,
      reason,
      domain,
      metadata,
      fieldViolations: violations,
      retryDelayMs: askedDelayMs(connect),
      requestId,
      message: connect.rawMessage,
      cause: err,
    });
  }
}
