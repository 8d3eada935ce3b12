// A stand-in for the hub's WebSocket endpoint: records every connection and
// the frames its client sends, and lets a test answer them by hand.

import { WebSocketServer } from "ws";

export class FakeHub {
  /** @param {{ refuse?: (token: string) => boolean }} [options] */
  static async start(options = {}) {
    const hub = new FakeHub(options);
    await new Promise((resolve) => hub.server.once("listening", resolve));
    return hub;
  }

  constructor(options) {
    this.connections = [];
    this.attempts = [];
    this.waiters = [];
    this.server = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      verifyClient: (info, done) => {
        const token = new URL(info.req.url, "http://x").searchParams.get("token");
        this.attempts.push({ at: Date.now(), token });
        if (options.refuse?.(token)) done(false, 401, "Unauthorized");
        else done(true);
      },
    });
    this.server.on("connection", (ws, req) => {
      const conn = new FakeConnection(ws, new URL(req.url, "http://x").searchParams.get("token"));
      this.connections.push(conn);
      const waiter = this.waiters.shift();
      if (waiter) waiter(conn);
    });
  }

  get url() {
    return `ws://127.0.0.1:${this.server.address().port}/v1/ws`;
  }

  /** The next connection (or the one already made and not yet taken). */
  nextConnection(timeoutMs = 5000) {
    const taken = this.taken ?? 0;
    if (this.connections.length > taken) {
      this.taken = taken + 1;
      return Promise.resolve(this.connections[taken]);
    }
    return withTimeout(
      new Promise((resolve) =>
        this.waiters.push((c) => {
          this.taken = (this.taken ?? 0) + 1;
          resolve(c);
        }),
      ),
      timeoutMs,
      "no connection",
    );
  }

  async close() {
    for (const c of this.connections) c.ws.terminate();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

export class FakeConnection {
  constructor(ws, token) {
    this.ws = ws;
    this.token = token;
    this.received = [];
    this.pending = [];
    this.unclaimed = [];
    this.closed = new Promise((resolve) => ws.on("close", (code) => resolve(code)));
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data));
      this.received.push(frame);
      const i = this.pending.findIndex((p) => p.match(frame));
      if (i >= 0) this.pending.splice(i, 1)[0].resolve(frame);
      else this.unclaimed.push(frame);
    });
  }

  /** The next client frame with this `op` (and channel, when given). */
  next(op, channel, timeoutMs = 5000) {
    const match = (f) => f.op === op && (channel === undefined || f.channel === channel);
    const i = this.unclaimed.findIndex(match);
    if (i >= 0) return Promise.resolve(this.unclaimed.splice(i, 1)[0]);
    return withTimeout(
      new Promise((resolve) => this.pending.push({ match, resolve })),
      timeoutMs,
      `no ${op} frame`,
    );
  }

  send(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  subscribed(request, { snapshot = {}, position, recovered = false }) {
    this.send({ op: "subscribed", id: request.id, channel: request.channel, snapshot, position, recovered });
  }

  message(channel, id, position, type = "call.updated", data = {}) {
    this.send({ op: "message", id, tenant_id: TENANT, channel, type, position, data });
  }
}

export const TENANT = "6c1d9e0a-0b1d-4f3a-8f55-2f6c1d9e0a77";
export const CALLS = `tenant:${TENANT}:calls`;

/** An unsigned JWT with these claims: the client reads tokens, never verifies them. */
export function token(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: "u", tenant_id: TENANT, role: "admin", ...claims })}.sig`;
}

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
    }),
  ]);
}

/** Resolves once `predicate()` holds (polled), or fails after `ms`. */
export async function until(predicate, ms = 5000, what = "condition") {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
