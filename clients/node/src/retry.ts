/**
 * When a failed call is tried again. UNAVAILABLE and ABORTED are retried always; RESOURCE_EXHAUSTED only when the
 * server sent `google.rpc.RetryInfo` (a rate limit, a full write queue: nothing was written); nothing else.
 * The delay before retry `n` (0 the first) is drawn with full jitter from `[0, backoffMs * 2**n]`, at least what
 * RetryInfo asks and at most {@link MAX_RETRY_DELAY_MS}.
 */

import { Code, ConnectError } from "@connectrpc/connect";

import { askedDelayMs } from "./errors.js";

/** The longest the client waits before one retry, whatever the server's RetryInfo says. */
export const MAX_RETRY_DELAY_MS = 10_000;

/** Codes retried always; RESOURCE_EXHAUSTED is retried only with the server's RetryInfo. */
export const RETRYABLE: ReadonlySet<Code> = new Set([Code.Unavailable, Code.Aborted]);

/** Milliseconds to wait before retry number `retry` (0 the first) of a call that failed with `err`, or
 * `undefined` when it must not be retried; `jitter` is a number in [0, 1). */
export function retryDelayMs(err: unknown, retry: number, backoffMs: number, jitter: number): number | undefined {
  if (!(err instanceof ConnectError)) return undefined;
  const asked = askedDelayMs(err);
  if (!RETRYABLE.has(err.code) && !(err.code === Code.ResourceExhausted && asked > 0)) return undefined;
  return Math.min(MAX_RETRY_DELAY_MS, Math.max(asked, jitter * backoffMs * 2 ** retry));
}
