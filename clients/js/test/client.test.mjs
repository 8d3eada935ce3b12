import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { LiveClient, backoffCap, backoffDelay, decodeToken, canSeeBilling } from "../dist/lad-live.js";
import { CALLS, FakeHub, TENANT, token, until } from "./fake-hub.mjs";

const FAST = { initialMs: 20, maxMs: 200, factor: 2 };

function client(hub, options = {}) {
  const statuses = [];
  const c = new LiveClient({
    url: hub.url,
    token: token({ exp: Math.floor(Date.now() / 1000) + 3600 }),
    WebSocket,
    backoff: FAST,
    ...options,
    onStatus: (s) => {
      statuses.push(s);
      options.onStatus?.(s);
    },
  });
  return { c, statuses };
}

function recorder() {
  const log = { snapshots: [], recovered: [], messages: [], errors: [] };
  log.handlers = {
    onSnapshot: (snapshot, info) => log.snapshots.push({ snapshot, ...info }),
    onRecovered: (info) => log.recovered.push(info),
    onMessage: (m) => log.messages.push(m.id),
    onError: (e) => log.errors.push(e),
  };
  return log;
}

test("resubscribes with `since` after a reconnect and reports `recovered`", async (t) => {
  const hub = await FakeHub.start();
  const { c, statuses } = client(hub);
  t.after(() => (c.close(), hub.close()));
  const log = recorder();
  c.subscribe(CALLS, log.handlers);
  c.connect();

  const first = await hub.nextConnection();
  const sub = await first.next("subscribe", CALLS);
  assert.equal(sub.since, undefined, "a first subscribe has no position to resume from");
  first.subscribed(sub, { snapshot: { day: "2026-11-25", stats: [], calls_in_progress: [] }, position: "0:10" });
  first.message(CALLS, "7.0", "0:11");
  first.message(CALLS, "7.1", "2:5");
  await until(() => log.messages.length === 2);
  assert.equal(c.position(CALLS), "2:5");

  first.ws.close(1001, "hub shutting down");
  const second = await hub.nextConnection();
  const resub = await second.next("subscribe", CALLS);
  assert.equal(resub.since, "2:5", "resumes from the last position seen");
  second.subscribed(resub, { snapshot: {}, position: "2:5", recovered: true });
  second.message(CALLS, "7.2", "0:12");
  await until(() => log.messages.length === 3);

  assert.deepEqual(log.recovered, [{ position: "2:5" }]);
  assert.equal(log.snapshots.length, 1, "a recovered channel keeps its view: no second snapshot");
  assert.deepEqual(log.messages, ["7.0", "7.1", "7.2"]);
  const states = statuses.map((s) => s.state);
  assert.deepEqual(states, ["connecting", "live", "reconnecting", "reconnecting", "recovered"]);
  assert.equal(statuses[2].code, 1001);
  assert.deepEqual(
    { resumed: statuses.at(-1).resumed, reset: statuses.at(-1).reset },
    { resumed: 1, reset: 0 },
  );
});

test("a position the hub can no longer serve comes back as a fresh snapshot marked as a reset", async (t) => {
  const hub = await FakeHub.start();
  const { c, statuses } = client(hub);
  t.after(() => (c.close(), hub.close()));
  const log = recorder();
  c.subscribe(CALLS, log.handlers).unsubscribe;
  c.connect();
  const first = await hub.nextConnection();
  first.subscribed(await first.next("subscribe"), { snapshot: { n: 1 }, position: "0:3" });
  await until(() => log.snapshots.length === 1);
  first.ws.terminate();

  const second = await hub.nextConnection();
  const resub = await second.next("subscribe");
  assert.equal(resub.since, "0:3");
  second.subscribed(resub, { snapshot: { n: 2 }, position: "-1:99", recovered: false });
  await until(() => log.snapshots.length === 2);
  assert.deepEqual(log.snapshots[1], { snapshot: { n: 2 }, position: "-1:99", reset: true });
  assert.equal(log.snapshots[0].reset, false);
  assert.equal(statuses.at(-1).state, "recovered");
  assert.equal(statuses.at(-1).reset, 1);
  assert.equal(statuses.find((s) => s.state === "reconnecting").code, 1006);
  assert.equal(c.position(CALLS), "-1:99");
});

test("drops repeated messages by id, across reconnects too", async (t) => {
  const hub = await FakeHub.start();
  const { c } = client(hub);
  t.after(() => (c.close(), hub.close()));
  const log = recorder();
  c.subscribe(CALLS, log.handlers);
  c.connect();
  const first = await hub.nextConnection();
  first.subscribed(await first.next("subscribe"), { position: "0:1" });
  first.message(CALLS, "1.0", "0:2");
  first.message(CALLS, "1.0", "0:2");
  first.message(CALLS, "1.1", "0:3");
  first.message(CALLS, "1.0", "0:2");
  await until(() => c.position(CALLS) === "0:3");
  first.ws.close(4008, "too slow");

  const second = await hub.nextConnection();
  const resub = await second.next("subscribe");
  second.subscribed(resub, { position: resub.since, recovered: true });
  // An overlap the hub or the relay replays after a reconnect.
  second.message(CALLS, "1.1", "0:3");
  second.message(CALLS, "1.2", "0:4");
  await until(() => log.messages.length === 3);
  second.message(CALLS, "1.2", "0:4");
  second.message(CALLS, "1.3", "0:5");
  await until(() => log.messages.length === 4);
  assert.deepEqual(log.messages, ["1.0", "1.1", "1.2", "1.3"]);
});

test("4001 asks the token provider for a new token and reconnects with it at once", async (t) => {
  const hub = await FakeHub.start();
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const issued = [token({ exp, n: 1 }), token({ exp: exp + 60, n: 2 })];
  let calls = 0;
  const { c } = client(hub, { token: async () => issued[Math.min(calls++, issued.length - 1)] });
  t.after(() => (c.close(), hub.close()));
  const log = recorder();
  c.subscribe(CALLS, log.handlers);
  c.connect();

  const first = await hub.nextConnection();
  assert.equal(first.token, issued[0]);
  first.subscribed(await first.next("subscribe"), { position: "0:7" });
  await until(() => log.snapshots.length === 1);
  assert.equal(calls, 1);
  // A 1001 reconnect reuses the token: only expiry asks for another.
  first.ws.close(1001);
  const second = await hub.nextConnection();
  assert.equal(second.token, issued[0]);
  assert.equal(calls, 1);
  second.subscribed(await second.next("subscribe"), { position: "0:7", recovered: true });

  const closedAt = Date.now();
  second.ws.close(4001, "token expired");
  const third = await hub.nextConnection();
  assert.equal(calls, 2, "the provider was asked again");
  assert.equal(third.token, issued[1], "the new connection carries the new token");
  assert.ok(Date.now() - closedAt < FAST.initialMs * 5, "no backoff after a 4001");
  const resub = await third.next("subscribe");
  assert.equal(resub.since, "0:7");
});

test("refreshes the token before `exp` and switches connections without a gap", async (t) => {
  const hub = await FakeHub.start();
  const now = Math.floor(Date.now() / 1000);
  const issued = [token({ exp: now + 2 }), token({ exp: now + 3600 })];
  let calls = 0;
  const { c, statuses } = client(hub, {
    token: () => issued[Math.min(calls++, 1)],
    refreshBeforeExpMs: 1_500,
  });
  t.after(() => (c.close(), hub.close()));
  const log = recorder();
  c.subscribe(CALLS, log.handlers);
  c.connect();
  const first = await hub.nextConnection();
  first.subscribed(await first.next("subscribe"), { position: "0:1" });
  first.message(CALLS, "3.0", "0:2");

  const second = await hub.nextConnection(3000);
  assert.equal(second.token, issued[1]);
  const resub = await second.next("subscribe");
  assert.equal(resub.since, "0:2");
  assert.equal(await first.closed, 1000, "the old connection is closed by the client once the new one is open");
  second.subscribed(resub, { position: "0:2", recovered: true });
  second.message(CALLS, "3.0", "0:2");
  second.message(CALLS, "3.1", "0:3");
  await until(() => log.messages.length === 2);
  assert.deepEqual(log.messages, ["3.0", "3.1"]);
  assert.deepEqual(
    statuses.map((s) => s.state),
    ["connecting", "live"],
    "a token switch is not a reconnect",
  );
});

test("backoff delays stay within [cap/2, cap] and the cap doubles up to the maximum", () => {
  const opts = { initialMs: 500, maxMs: 15_000, factor: 2 };
  const caps = [500, 1000, 2000, 4000, 8000, 15_000, 15_000, 15_000];
  caps.forEach((cap, attempt) => {
    assert.equal(backoffCap(attempt, opts), cap);
    assert.equal(backoffDelay(attempt, opts, () => 0), cap / 2);
    assert.equal(backoffDelay(attempt, opts, () => 0.999999), cap);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(attempt, opts);
      assert.ok(d >= cap / 2 && d <= cap, `attempt ${attempt}: ${d} outside [${cap / 2}, ${cap}]`);
    }
  });
  assert.equal(backoffCap(10_000, opts), 15_000, "no overflow for a long outage");
});

test("refused upgrades (401) retry with growing delays and ask for a token each time", async (t) => {
  let refusing = true;
  const hub = await FakeHub.start({ refuse: () => refusing });
  let calls = 0;
  const opts = { initialMs: 40, maxMs: 320, factor: 2 };
  const { c, statuses } = client(hub, {
    backoff: opts,
    token: () => token({ exp: Math.floor(Date.now() / 1000) + 3600, n: ++calls }),
  });
  t.after(() => (c.close(), hub.close()));
  c.subscribe(CALLS, recorder().handlers);
  c.connect();
  await until(() => hub.attempts.length === 6, 10_000, "six attempts");
  const gaps = hub.attempts.slice(1).map((a, i) => a.at - hub.attempts[i].at);
  gaps.forEach((gap, attempt) => {
    const cap = backoffCap(attempt, opts);
    assert.ok(gap >= cap / 2 - 5, `gap ${attempt} = ${gap} ms, below ${cap / 2}`);
    assert.ok(gap <= cap + 150, `gap ${attempt} = ${gap} ms, far above ${cap}`);
  });
  const retries = statuses.filter((s) => s.state === "reconnecting" && s.retryInMs !== undefined);
  retries.forEach((s, i) => assert.ok(s.retryInMs <= backoffCap(i, opts)));
  assert.equal(new Set(hub.attempts.map((a) => a.token)).size, 6, "a fresh token for every attempt");

  refusing = false;
  const conn = await hub.nextConnection();
  conn.subscribed(await conn.next("subscribe"), { position: "0:1" });
  await until(() => c.status === "live");
});

test("a connection that stops answering is dropped and replaced", async (t) => {
  const hub = await FakeHub.start();
  const { c, statuses } = client(hub, { pingIntervalMs: 50, pongTimeoutMs: 100 });
  t.after(() => (c.close(), hub.close()));
  const log = recorder();
  c.subscribe(CALLS, log.handlers);
  c.connect();
  const first = await hub.nextConnection();
  first.subscribed(await first.next("subscribe"), { position: "0:1" });
  // Answer pings for a while: the connection stays.
  for (let i = 0; i < 3; i++) {
    const ping = await first.next("ping");
    first.send({ op: "pong", id: ping.id });
  }
  assert.equal(hub.connections.length, 1);
  // Then silence, like a laptop whose Wi-Fi went away without a close.
  const second = await hub.nextConnection(2000);
  assert.equal(statuses.find((s) => s.state === "reconnecting").reason, "no answer to ping");
  const resub = await second.next("subscribe");
  assert.equal(resub.since, "0:1");
});

test("a forbidden channel is reported once and not retried; `internal` is retried", async (t) => {
  const hub = await FakeHub.start();
  const { c } = client(hub);
  t.after(() => (c.close(), hub.close()));
  const billing = `tenant:${TENANT}:billing`;
  const b = recorder();
  const calls = recorder();
  c.subscribe(billing, b.handlers);
  c.subscribe(CALLS, calls.handlers);
  c.connect();
  const conn = await hub.nextConnection();
  const subBilling = await conn.next("subscribe", billing);
  conn.send({ op: "error", id: subBilling.id, code: "forbidden", message: "billing needs owner, admin or billing.view" });
  const subCalls = await conn.next("subscribe", CALLS);
  conn.send({ op: "error", id: subCalls.id, code: "internal", message: "snapshot timed out" });
  const again = await conn.next("subscribe", CALLS);
  conn.subscribed(again, { position: "0:1" });
  await until(() => calls.snapshots.length === 1 && b.errors.length === 1);
  assert.equal(b.errors[0].code, "forbidden");
  assert.equal(b.errors[0].channel, billing);
  assert.equal(calls.errors.length, 0);

  conn.ws.close(1011);
  const next = await hub.nextConnection();
  const resubs = [await next.next("subscribe")];
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(
    [...resubs, ...next.unclaimed.filter((f) => f.op === "subscribe")].map((f) => f.channel),
    [CALLS],
    "a refused channel is not resubscribed",
  );
});

test("unsubscribe stops the channel's messages", async (t) => {
  const hub = await FakeHub.start();
  const { c } = client(hub);
  t.after(() => (c.close(), hub.close()));
  const log = recorder();
  const handle = c.subscribe(CALLS, log.handlers);
  c.connect();
  const conn = await hub.nextConnection();
  conn.subscribed(await conn.next("subscribe"), { position: "0:1" });
  conn.message(CALLS, "5.0", "0:2");
  await until(() => log.messages.length === 1);
  handle.unsubscribe();
  const unsub = await conn.next("unsubscribe");
  assert.equal(unsub.channel, CALLS);
  conn.message(CALLS, "5.1", "0:3");
  conn.send({ op: "unsubscribed", id: unsub.id, channel: CALLS });
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(log.messages, ["5.0"]);
});

test("reads the token's claims without verifying them", () => {
  const claims = decodeToken(token({ exp: 42, caps: ["billing.view"], role: "member", name: "Zoë" }));
  assert.equal(claims.exp, 42);
  assert.equal(claims.tenant_id, TENANT);
  assert.equal(claims.name, "Zoë");
  assert.equal(canSeeBilling(claims), true);
  assert.equal(canSeeBilling(decodeToken(token({ role: "viewer" }))), false);
  assert.equal(canSeeBilling(decodeToken(token({ role: "owner" }))), true);
  assert.equal(decodeToken("not-a-jwt"), null);
});

test("a channel dropped while a reconnect resubscribes does not hold back `recovered`", async (t) => {
  const hub = await FakeHub.start();
  const { c, statuses } = client(hub);
  t.after(() => (c.close(), hub.close()));
  const billing = `tenant:${TENANT}:billing`;
  c.subscribe(CALLS, recorder().handlers);
  const b = c.subscribe(billing, recorder().handlers);
  c.connect();
  const first = await hub.nextConnection();
  first.subscribed(await first.next("subscribe", CALLS), { position: "0:1" });
  first.subscribed(await first.next("subscribe", billing), { position: "0:2" });
  first.ws.close(1001);
  const second = await hub.nextConnection();
  const resub = await second.next("subscribe", CALLS);
  await second.next("subscribe", billing);
  b.unsubscribe();
  second.subscribed(resub, { position: "0:1", recovered: true });
  await until(() => c.status === "recovered");
  assert.deepEqual(statuses.at(-1), { state: "recovered", resumed: 1, reset: 0 });
});
