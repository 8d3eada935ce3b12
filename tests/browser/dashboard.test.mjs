// The dashboard in headless Chromium against a real hub with demo traffic.
// Run by scripts/browser-test.sh, which prepares the database, the topics,
// the tokens and a second tenant's traffic, and passes them in the
// environment. This script owns the hub process so it can restart it.

import { spawn } from "node:child_process";
import { appendFileSync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import WebSocket from "ws";
import { LiveClient, channels } from "../../clients/js/dist/lad-live.js";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run scripts/browser-test.sh)`);
  return v;
};
const HUB_BIN = env("LAD_HUB_BIN");
const ADDR = env("LAD_HTTP_ADDR");
const TENANT_A = env("BROWSER_TENANT_A");
const TENANT_B = env("BROWSER_TENANT_B");
const TOKEN_A = env("BROWSER_TOKEN_A");
const TOKEN_B = env("BROWSER_TOKEN_B");
const TOKEN_VIEWER = env("BROWSER_TOKEN_VIEWER");
const OUT = env("BROWSER_OUT");
const PID_FILE = env("BROWSER_PID_FILE");
const HUB_LOG = join(OUT, "hub.log");
const BASE = `http://${ADDR}`;

const results = [];
async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`  ok   ${name} (${Date.now() - started} ms)`);
  } catch (err) {
    results.push({ name, ok: false });
    console.log(`  FAIL ${name}: ${err.message.split("\n")[0]}`);
  }
}
const assert = (cond, message) => {
  if (!cond) throw new Error(message);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- the hub process

let hub = null;
let demoB = null;

function track(child) {
  appendFileSync(PID_FILE, `${child.pid}\n`);
  return child;
}

function startHub() {
  const log = openSync(HUB_LOG, "a");
  hub = track(spawn(HUB_BIN, ["serve", "--demo"], { stdio: ["ignore", log, log], env: process.env }));
  return waitReady();
}

/** Tenant B's traffic on the same topics (which the hub has created by now). */
function startDemoB() {
  const log = openSync(join(OUT, "demo-b.log"), "a");
  demoB = track(
    spawn(HUB_BIN, ["demo", "--tenant", TENANT_B, "--calls-per-second", "3"], { stdio: ["ignore", log, log], env: process.env }),
  );
}

async function waitReady(ms = 90_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${BASE}/readyz`);
      if (res.ok) return;
    } catch {
      // Not listening yet.
    }
    await sleep(200);
  }
  throw new Error(`hub not ready within ${ms} ms (see ${HUB_LOG})`);
}

async function stopHub() {
  if (!hub || hub.exitCode !== null) return;
  const exited = new Promise((r) => hub.once("exit", r));
  hub.kill("SIGTERM");
  const killed = await Promise.race([exited.then(() => true), sleep(30_000).then(() => false)]);
  if (!killed) {
    hub.kill("SIGKILL");
    await exited;
  }
}

// ---------------------------------------------------------------- what the page shows

/** Installed before the page's own scripts: remembers every call row ever shown and its states. */
function observeCalls() {
  const seen = { ids: [], tenants: [], states: {} };
  window.__seen = seen;
  const record = (tr) => {
    const id = tr.dataset.callId;
    if (!id) return;
    if (!seen.states[id]) {
      seen.states[id] = [];
      seen.ids.push(id);
      seen.tenants.push(tr.dataset.tenantId);
    }
    const s = tr.dataset.status;
    const list = seen.states[id];
    if (s && list[list.length - 1] !== s) list.push(s);
  };
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (m.type === "attributes") record(m.target);
      for (const n of m.addedNodes ?? []) if (n.nodeType === 1 && n.matches("tr[data-call-id]")) record(n);
    }
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"] });
}

const seen = (page) => page.evaluate(() => window.__seen);
const badge = (page) => page.getAttribute("#conn", "data-state");

async function waitFor(page, fn, arg, what, timeout = 30_000) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 200 });
  } catch {
    throw new Error(`timed out waiting for ${what}`);
  }
}

// ---------------------------------------------------------------- the test

mkdirSync(OUT, { recursive: true });
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

// Tenant B's calls, seen from its own socket: the page must never show one.
const bCalls = new Set();
const observerB = new LiveClient({
  url: `ws://${ADDR}/v1/ws`,
  token: TOKEN_B,
  WebSocket,
  backoff: { initialMs: 250, maxMs: 2_000 },
});
observerB.subscribe(channels.calls(TENANT_B), {
  onSnapshot: (s) => s.calls_in_progress.forEach((c) => bCalls.add(c.id)),
  onMessage: (m) => m.type === "call.updated" && bCalls.add(m.data.id),
});

const consoleErrors = [];
let exitCode = 1;
try {
  console.log(`browser: hub at ${BASE}, Chromium ${browser.version()}`);
  await startHub();
  startDemoB();
  observerB.connect();

  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.on("console", (msg) => msg.type() === "error" && consoleErrors.push(msg.text()));
  page.on("pageerror", (err) => consoleErrors.push(String(err)));
  await page.addInitScript(observeCalls);

  await check("the page opens with ?token=, goes live and takes the token out of the address bar", async () => {
    const res = await page.goto(`${BASE}/?token=${TOKEN_A}`);
    assert(res.ok(), `GET / answered ${res.status()}`);
    await waitFor(page, () => document.querySelector("#conn")?.dataset.state === "live", null, "the live badge");
    assert(!page.url().includes("token="), `the token is still in the URL: ${page.url()}`);
    const tenant = await page.textContent("#who-tenant");
    assert(tenant === TENANT_A, `header shows tenant ${tenant}`);
  });

  await check("calls appear and change state", async () => {
    await waitFor(page, () => document.querySelectorAll("#calls tr[data-call-id]").length >= 3, null, "three call rows");
    await waitFor(
      page,
      () => Object.values(window.__seen.states).some((s) => s.length >= 2),
      null,
      "a call row changing state",
    );
    await waitFor(
      page,
      () =>
        Object.values(window.__seen.states).some((l) =>
          ["completed", "failed", "no_answer", "busy", "canceled"].includes(l[l.length - 1]),
        ),
      null,
      "a call ending",
    );
    const s = await seen(page);
    const changed = Object.values(s.states).filter((l) => l.length >= 2);
    const ended = Object.values(s.states).filter((l) => ["completed", "failed", "no_answer", "busy", "canceled"].includes(l.at(-1)));
    console.log(`       ${s.ids.length} calls seen, ${changed.length} changed state, e.g. ${changed[0].join(" → ")}; ${ended.length} ended so far`);
  });

  await check("agents' stats, the wallet, the funnel and the assistant fill in", async () => {
    await waitFor(page, () => document.querySelectorAll("#agents tr[data-agent-id]").length >= 1, null, "an agent row");
    await waitFor(page, () => /\d/.test(document.querySelector("#wallet-balance").textContent), null, "a wallet balance");
    const billingShown = await page.isVisible("section.billing");
    assert(billingShown, "an admin sees the billing panel");
    await waitFor(page, () => document.querySelector("#charges tr") !== null, null, "a charge line");
    await waitFor(page, () => document.querySelector("#funnel .step") !== null, null, "a funnel step");
    await waitFor(page, () => document.querySelector("#assistant article[data-message-id]") !== null, null, "an assistant reply", 45_000);
    const reply = await page.textContent("#assistant article .text");
    assert(reply.length > 0, "the reply has text");
  });

  await check("clicking a call shows its live transcript", async () => {
    // An answered demo call speaks 0 to 3 lines right after it is answered:
    // follow calls as they are answered until one speaks.
    const tried = [];
    for (let attempt = 0; attempt < 6; attempt++) {
      await waitFor(
        page,
        (old) => [...document.querySelectorAll('#calls tr[data-status="in_progress"]')].some((tr) => !old.includes(tr.dataset.callId)),
        tried,
        "a call being answered",
      );
      const id = await page.evaluate(
        (old) =>
          [...document.querySelectorAll('#calls tr[data-status="in_progress"]')]
            .map((tr) => tr.dataset.callId)
            .find((id) => !old.includes(id)),
        tried,
      );
      tried.push(id);
      const row = page.locator(`#calls tr[data-call-id="${id}"]`);
      if ((await row.count()) === 0) continue;
      await row.click();
      const shown = await page.textContent("#transcript-call");
      assert(id.startsWith(shown), `transcript header shows ${shown} for ${id}`);
      try {
        await page.waitForSelector("#transcript li[data-seq]", { timeout: 8_000 });
        const line = await page.textContent("#transcript li[data-seq] .text");
        console.log(`       call ${shown}: "${line}" after ${attempt + 1} call(s) tried`);
        return;
      } catch {
        // This call said nothing: try the next one.
      }
    }
    throw new Error(`none of ${tried.length} answered calls showed a transcript line`);
  });

  // Let the screen fill up before the picture people will look at.
  await sleep(3_000);
  await page.screenshot({ path: join(OUT, "dashboard.png") });

  await check("a member without billing.view gets no billing panel", async () => {
    const viewer = await context.newPage();
    await viewer.goto(`${BASE}/?token=${TOKEN_VIEWER}`);
    await waitFor(viewer, () => document.querySelectorAll("#calls tr[data-call-id]").length >= 1, null, "calls for the member");
    await waitFor(viewer, () => document.body.dataset.billing === "hidden", null, "the billing panel hidden");
    assert(!(await viewer.isVisible("section.billing")), "the billing panel is visible");
    assert(!(await viewer.isVisible("#kpi-wallet")), "the wallet tile is visible");
    await viewer.screenshot({ path: join(OUT, "dashboard-member.png") });
    await viewer.close();
  });

  await check("after the hub restarts the page reconnects and shows current data", async () => {
    const before = new Set((await seen(page)).ids);
    await stopHub();
    await waitFor(page, () => document.querySelector("#conn").dataset.state === "reconnecting", null, "the reconnecting badge", 15_000);
    await page.screenshot({ path: join(OUT, "dashboard-reconnecting.png") });
    await startHub();
    await waitFor(
      page,
      () => ["recovered", "live"].includes(document.querySelector("#conn").dataset.state),
      null,
      "the badge back to recovered or live",
      60_000,
    );
    const state = await badge(page);
    // Calls started by the new hub process: data the page could only get live.
    await waitFor(
      page,
      (old) => [...document.querySelectorAll("#calls tr[data-call-id]")].some((tr) => !old.includes(tr.dataset.callId)),
      [...before],
      "a call started after the restart",
      60_000,
    );
    await waitFor(
      page,
      (old) =>
        Object.entries(window.__seen.states).some(([id, states]) => !old.includes(id) && states.length >= 2),
      [...before],
      "a new call changing state",
      60_000,
    );
    // The rows on screen are the hub's calls in progress now, not leftovers:
    // every shown, unfinished call is one the hub still has in progress.
    const fresh = await new Promise((resolve, reject) => {
      const probe = new LiveClient({ url: `ws://${ADDR}/v1/ws`, token: TOKEN_A, WebSocket });
      probe.subscribe(channels.calls(TENANT_A), {
        onSnapshot: (s) => {
          probe.close();
          resolve(s);
        },
        onError: (e) => (probe.close(), reject(new Error(e.message))),
      });
      probe.connect();
    });
    const live = new Set(fresh.calls_in_progress.map((c) => c.id));
    const shownUnfinished = await page.evaluate(() =>
      [...document.querySelectorAll("#calls tr[data-call-id]:not(.ended)")].map((tr) => tr.dataset.callId),
    );
    // (Rows that are not in `live` but new since the restart started after the probe's snapshot.)
    const stale = shownUnfinished.filter((id) => before.has(id) && !live.has(id));
    assert(stale.length === 0, `${stale.length} rows from before the restart are not in progress on the hub`);
    console.log(`       badge went ${state}; ${shownUnfinished.length} calls on screen, hub has ${live.size} in progress`);
    await sleep(3_000);
    await page.screenshot({ path: join(OUT, "dashboard-after-restart.png") });
  });

  await check("another tenant's calls never appear", async () => {
    const s = await seen(page);
    assert(bCalls.size > 0, "tenant B produced no call: the check would prove nothing");
    const leaked = s.ids.filter((id) => bCalls.has(id));
    assert(leaked.length === 0, `tenant B's calls on tenant A's page: ${leaked.join(", ")}`);
    const foreign = s.tenants.filter((t) => t !== TENANT_A);
    assert(foreign.length === 0, `rows of tenants ${[...new Set(foreign)].join(", ")}`);
    console.log(`       ${s.ids.length} calls of tenant A shown, ${bCalls.size} calls of tenant B never shown`);
  });

  await check("the page logged no error", async () => {
    // A refused socket while the hub was down is the browser's own log line, not the page's.
    const own = consoleErrors.filter((e) => !/WebSocket connection to|ERR_CONNECTION_REFUSED|Failed to load resource/.test(e));
    assert(own.length === 0, own.join(" | "));
  });

  exitCode = results.every((r) => r.ok) ? 0 : 1;
} catch (err) {
  console.log(`browser: aborted: ${err.stack ?? err}`);
} finally {
  observerB.close();
  demoB?.kill("SIGTERM");
  await browser.close().catch(() => {});
  await stopHub().catch(() => {});
  const passed = results.filter((r) => r.ok).length;
  console.log(`browser: ${passed} passed, ${results.length - passed} failed`);
  process.exit(results.length === 0 ? 1 : exitCode);
}
