/**
 * A gRPC proxy on a real port in front of the live ledger that fails calls as its script says: answers
 * UNAVAILABLE, ABORTED, RESOURCE_EXHAUSTED (with or without RetryInfo) before the server sees the call, or
 * forwards it and then loses the answer (`lost`), as a dropped connection does. Every request it receives is
 * kept (path and protobuf body), so a test can check what each attempt sent.
 */

import http2 from "node:http2";
import type { AddressInfo } from "node:net";

import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";

import { RetryInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";

export type Step = "forward" | "unavailable" | "aborted" | "exhausted" | "rate_limited" | "lost";

export interface Received {
  path: string;
  /** The request message (the gRPC frame's payload). */
  body: Uint8Array;
  authorization: string;
}

function trailersOnly(code: number, message: string, details?: Uint8Array): http2.OutgoingHttpHeaders {
  return {
    ":status": 200,
    "content-type": "application/grpc",
    "grpc-status": String(code),
    "grpc-message": encodeURIComponent(message),
    ...(details ? { "grpc-status-details-bin": Buffer.from(details).toString("base64") } : {}),
  };
}

function rateLimited(delayMs: number): Uint8Array {
  const retry = create(RetryInfoSchema, {
    retryDelay: { seconds: BigInt(Math.floor(delayMs / 1000)), nanos: (delayMs % 1000) * 1e6 },
  });
  return toBinary(StatusSchema, create(StatusSchema, { code: 8, message: "slow down", details: [anyPack(RetryInfoSchema, retry)] }));
}

interface Answer {
  headers: http2.IncomingHttpHeaders;
  data: Buffer;
  trailers: http2.IncomingHttpHeaders;
}

function withoutPseudo(headers: http2.IncomingHttpHeaders): http2.OutgoingHttpHeaders {
  const out: http2.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(":") && value !== undefined) out[name] = value;
  }
  return out;
}

export class FlakyProxy {
  script: Step[] = [];
  readonly received: Received[] = [];
  private readonly server = http2.createServer();
  private readonly upstream: http2.ClientHttp2Session;

  private constructor(upstreamTarget: string) {
    this.upstream = http2.connect(`http://${upstreamTarget}`);
    this.upstream.on("error", () => undefined);
    this.server.on("stream", (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        void this.handle(stream, headers, Buffer.concat(chunks)).catch(() => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
      });
    });
  }

  static async start(upstreamTarget: string): Promise<FlakyProxy> {
    const proxy = new FlakyProxy(upstreamTarget);
    await new Promise<void>((resolve) => proxy.server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get target(): string {
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.upstream.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, frame: Buffer): Promise<void> {
    const path = String(headers[":path"]);
    this.received.push({ path, body: frame.subarray(5), authorization: String(headers["authorization"] ?? "") });
    const step = this.script.shift() ?? "forward";
    if (step === "unavailable") return void stream.respond(trailersOnly(14, "the proxy is restarting"), { endStream: true });
    if (step === "aborted") return void stream.respond(trailersOnly(10, "try again"), { endStream: true });
    if (step === "exhausted") return void stream.respond(trailersOnly(8, "no RetryInfo"), { endStream: true });
    if (step === "rate_limited") {
      return void stream.respond(trailersOnly(8, "slow down", rateLimited(250)), { endStream: true });
    }
    const answer = await this.forward(path, headers, frame);
    if (step === "lost") {
      return void stream.respond(trailersOnly(14, "the connection dropped after the write"), { endStream: true });
    }
    if (answer.data.length === 0 && answer.headers["grpc-status"] !== undefined) {
      return void stream.respond({ ...withoutPseudo(answer.headers), ":status": 200 }, { endStream: true });
    }
    stream.respond({ ...withoutPseudo(answer.headers), ":status": 200 }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers(withoutPseudo(answer.trailers)));
    stream.end(answer.data);
  }

  private forward(path: string, headers: http2.IncomingHttpHeaders, frame: Buffer): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const outgoing: http2.OutgoingHttpHeaders = { ":method": "POST", ":path": path };
      for (const name of ["content-type", "te", "authorization", "grpc-timeout"]) {
        const value = headers[name];
        if (value !== undefined) outgoing[name] = value;
      }
      const req = this.upstream.request(outgoing);
      const answer: Answer = { headers: {}, data: Buffer.alloc(0), trailers: {} };
      const chunks: Buffer[] = [];
      req.on("response", (h) => (answer.headers = h));
      req.on("trailers", (t) => (answer.trailers = t));
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        answer.data = Buffer.concat(chunks);
        resolve(answer);
      });
      req.on("error", reject);
      req.end(frame);
    });
  }
}
