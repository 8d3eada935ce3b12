// The hub's dashboard: one LiveClient, one subscription per panel. Rows are
// created once per key and then only their cells' text changes, so nothing
// moves while values update.

import { LiveClient, canSeeBilling, channels, decodeToken } from "./lad-live.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "lad.token";
const CAMPAIGN_KEY = "lad.campaign";
/** An ended call stays this long with its final state before its row is freed. */
const ENDED_LINGER_MS = 4_000;
/** A freed row waits this long for a new call before the rows below move up. */
const FREE_SLOT_MS = 10_000;
const MAX_CHARGES = 12;
const FUNNEL = ["sent", "delivered", "opened", "clicked", "replied"];
const FUNNEL_SIDE = ["bounced", "failed", "skipped"];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const int = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const one = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const pct = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 0 });
const time = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });

/** Money arrives as exact decimal strings; shown to the cent, rounded half up on the string. */
function money(decimal, places = 2) {
  if (decimal === null || decimal === undefined) return "–";
  const [whole, frac = ""] = String(decimal).split(".");
  const padded = (frac + "0".repeat(places + 1)).slice(0, places + 1);
  let cents = BigInt(whole + padded.slice(0, places));
  if (Number(padded[places]) >= 5) cents += 1n;
  const s = cents.toString().padStart(places + 1, "0");
  const head = s.slice(0, s.length - places);
  return `${BigInt(head).toLocaleString()}.${s.slice(-places)}`;
}

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? null;
const short = (uuid) => (uuid ? uuid.slice(0, 8) : "—");
const clock = (iso) => (iso ? time.format(new Date(iso)) : "—");
function mmss(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

// ---------------------------------------------------------------- state

let client = null;
let claims = null;
let token = null;
const calls = new Map(); // call id → { row, el, cells, removeTimer }
const agents = new Map(); // agent id → { row, el, cells }
let statsDay = null;
let selectedCall = null;
let transcriptSub = null;
const transcriptSeqs = new Set();
const analyses = new Map(); // call id → analysis row
let campaignSub = null;
const steps = new Map(); // step id → Map(status → count)
const replies = new Map(); // message id → { content, done, tokens, model, el }
let billingSub = null;
let recoveredTimer = null;

// ---------------------------------------------------------------- sign-in

function start(newToken) {
  const c = decodeToken(newToken);
  if (!c || !c.tenant_id || !c.sub) return "This is not a hub token (no tenant_id or sub).";
  if (typeof c.exp === "number" && c.exp * 1000 <= Date.now()) return "This token has expired.";
  token = newToken;
  claims = c;
  sessionStorage.setItem(TOKEN_KEY, newToken);
  client?.close();
  resetViews();
  showIdentity();
  connect();
  return null;
}

function showIdentity() {
  $("who").hidden = false;
  $("who-tenant").textContent = claims.tenant_id;
  $("who-user").textContent = short(claims.sub);
  $("who-role").textContent = claims.role ?? "";
  $("welcome").hidden = true;
  $("board").hidden = false;
  document.body.dataset.tenant = claims.tenant_id;
  setBilling(canSeeBilling(claims));
}

function openSignIn(reason) {
  $("signin-reason").textContent = reason ?? "Paste a hub JWT (`lad-hub token` prints a dev one).";
  $("signin-error").hidden = true;
  $("signin-token").value = "";
  if (!$("signin").open) $("signin").showModal();
}

$("signin-form").addEventListener("submit", (ev) => {
  const error = start($("signin-token").value.trim());
  if (error) {
    ev.preventDefault();
    $("signin-error").textContent = error;
    $("signin-error").hidden = false;
  }
});
$("signin-cancel").addEventListener("click", () => $("signin").close());
$("signin-open").addEventListener("click", () => openSignIn());
$("welcome-signin").addEventListener("click", () => openSignIn());

// ---------------------------------------------------------------- connection

function connect() {
  client = new LiveClient({
    // Asked again after a 4001, before `exp`, and after refused attempts:
    // the current token, which the sign-in dialog may have replaced.
    token: () => token,
    backoff: { initialMs: 500, maxMs: 8_000 },
    onStatus: showStatus,
    onError: (e) => console.warn("hub:", e.message ?? e),
  });
  const t = claims.tenant_id;
  client.subscribe(channels.calls(t), {
    onSnapshot: callsSnapshot,
    onMessage: callsMessage,
  });
  if (canSeeBilling(claims)) {
    billingSub = client.subscribe(channels.billing(t), {
      onSnapshot: (s) => setWallet(s.wallet),
      onMessage: billingMessage,
      // A live capability check can still refuse: then the panel goes.
      onError: () => setBilling(false),
    });
  }
  client.subscribe(channels.ai(t, claims.sub), {
    onSnapshot: aiSnapshot,
    onMessage: aiMessage,
  });
  const campaign =
    new URLSearchParams(location.search).get("campaign") ??
    localStorage.getItem(`${CAMPAIGN_KEY}.${t}`) ??
    (t === meta("lad-demo-tenant") ? meta("lad-demo-campaign") : null);
  if (campaign && UUID.test(campaign.toLowerCase())) showCampaign(campaign.toLowerCase());
  if (selectedCall) selectCall(selectedCall);
  client.connect();
}

function showStatus(s) {
  const badge = $("conn");
  clearTimeout(recoveredTimer);
  let text = s.state;
  if (s.state === "reconnecting" && s.retryInMs !== undefined) {
    text = `reconnecting · ${Math.ceil(s.retryInMs / 1000)}s`;
  }
  if (s.state === "recovered") {
    text = s.reset ? "recovered · resynced" : "recovered";
    // Back to plain "live" once the eye has had time to see what happened.
    recoveredTimer = setTimeout(() => setBadge("live", "live"), 6_000);
  }
  setBadge(s.state, text);
  badge.title = s.reason ? `${s.reason}${s.code ? ` (${s.code})` : ""}` : "";
  if (s.state === "reconnecting" && s.reason === "token expired") {
    openSignIn("Your token has expired: paste a new one to reconnect.");
  }
}

function setBadge(state, text) {
  document.body.dataset.conn = state;
  $("conn").dataset.state = state;
  $("conn").textContent = text;
}

function setBilling(visible) {
  for (const el of document.querySelectorAll(".billing-only")) el.hidden = !visible;
  document.body.dataset.billing = visible ? "visible" : "hidden";
}

function resetViews() {
  for (const c of calls.values()) clearTimeout(c.removeTimer);
  calls.clear();
  $("calls").replaceChildren();
  agents.clear();
  $("agents").replaceChildren();
  steps.clear();
  $("funnel").replaceChildren();
  replies.clear();
  $("assistant").replaceChildren(emptyNote("No reply yet."));
  $("charges").replaceChildren();
  transcriptSeqs.clear();
  $("transcript").replaceChildren(emptyLine("Click a call to follow its transcript."));
  campaignSub = transcriptSub = billingSub = null;
  statsDay = null;
  refreshCounts();
}

function emptyNote(text) {
  const p = document.createElement("p");
  p.className = "empty";
  p.textContent = text;
  return p;
}

// ---------------------------------------------------------------- calls

function callsSnapshot(snapshot) {
  // The snapshot is the truth: rows it does not list are gone.
  for (const c of calls.values()) clearTimeout(c.removeTimer);
  calls.clear();
  $("calls").replaceChildren();
  for (const row of snapshot.calls_in_progress) upsertCall(row, false);
  agents.clear();
  $("agents").replaceChildren();
  statsDay = snapshot.day;
  $("day").textContent = snapshot.day;
  for (const row of snapshot.stats) upsertAgent(row);
  refreshCounts();
}

function callsMessage(m) {
  switch (m.type) {
    case "call.updated":
      upsertCall(m.data, true);
      break;
    case "call.stats":
      if (statsDay === null || m.data.day > statsDay) {
        // A new UTC day: yesterday's totals no longer belong on "today".
        statsDay = m.data.day;
        $("day").textContent = statsDay;
        agents.clear();
        $("agents").replaceChildren();
      }
      if (m.data.day === statsDay) upsertAgent(m.data);
      break;
    case "call.analyzed":
      analyses.set(m.data.call_log_id, m.data);
      if (m.data.call_log_id === selectedCall) showAnalysis(m.data);
      break;
  }
  refreshCounts();
}

function upsertCall(row, live) {
  let c = calls.get(row.id);
  if (!c) {
    if (row.ended_at && live) return; // Ended before we ever saw it: nothing to watch.
    const el = document.createElement("tr");
    el.dataset.callId = row.id;
    el.dataset.tenantId = row.tenant_id;
    el.tabIndex = 0;
    const cells = {};
    for (const key of ["id", "agent", "to", "status", "started", "talk"]) {
      const td = document.createElement("td");
      if (key === "started" || key === "talk") td.className = "r num";
      if (key === "id" || key === "agent") td.className = "mono";
      if (key === "status") {
        const pill = document.createElement("span");
        pill.className = "pill";
        td.append(pill);
        cells.pill = pill;
      }
      cells[key] = td;
      el.append(td);
    }
    cells.id.textContent = short(row.id);
    el.addEventListener("click", () => selectCall(row.id));
    el.addEventListener("keydown", (ev) => ev.key === "Enter" && selectCall(row.id));
    c = { row, el, cells, removeTimer: null };
    calls.set(row.id, c);
    // A new call takes the place of one that ended, so the rows around it
    // stay where the eye left them; only when no place is free does it go at
    // the end.
    const free = live ? $("calls").querySelector("tr.free") : null;
    if (free) free.replaceWith(el);
    else $("calls").append(el);
  }
  c.row = row;
  c.cells.agent.textContent = short(row.agent_id);
  c.cells.to.textContent = row.to_number ?? "—";
  c.cells.pill.textContent = row.status.replace("_", " ");
  c.el.dataset.status = row.status;
  c.cells.started.textContent = clock(row.started_at ?? row.created_at);
  c.el.classList.toggle("selected", row.id === selectedCall);
  tickCall(c);
  if (row.ended_at && c.removeTimer === null) {
    c.el.classList.add("ended");
    c.removeTimer = setTimeout(() => {
      calls.delete(row.id);
      freeRow(c.el);
      refreshCounts();
    }, ENDED_LINGER_MS);
  }
}

/** Blanks a row in place; it is reused by the next call or collapses after a while. */
function freeRow(el) {
  const blank = document.createElement("tr");
  blank.className = "free";
  blank.append(...[...el.children].map(() => document.createElement("td")));
  el.replaceWith(blank);
  setTimeout(() => blank.remove(), FREE_SLOT_MS);
}

function tickCall(c) {
  const r = c.row;
  let seconds = null;
  if (r.ended_at) seconds = r.duration_seconds;
  else if (r.answered_at) seconds = (Date.now() - Date.parse(r.answered_at)) / 1000;
  c.cells.talk.textContent = seconds === null ? "—" : mmss(seconds);
}

setInterval(() => {
  for (const c of calls.values()) if (!c.row.ended_at) tickCall(c);
}, 1_000);

function upsertAgent(row) {
  let a = agents.get(row.agent_id);
  if (!a) {
    const el = document.createElement("tr");
    el.dataset.agentId = row.agent_id;
    const cells = {};
    for (const key of ["agent", "calls", "answered", "completed", "minutes", "cost"]) {
      const td = document.createElement("td");
      td.className = key === "agent" ? "mono" : "r num";
      cells[key] = td;
      el.append(td);
    }
    cells.agent.textContent = short(row.agent_id);
    a = { el, cells };
    agents.set(row.agent_id, a);
    // Agents keep their place: sorted once by id, like the snapshot.
    const after = [...agents.keys()].sort().find((id) => id > row.agent_id);
    $("agents").insertBefore(el, after ? agents.get(after).el : null);
  }
  a.row = row;
  const ended = row.calls_completed + row.calls_failed;
  a.cells.calls.textContent = int.format(row.calls_started);
  a.cells.answered.textContent = row.calls_started ? pct.format(row.calls_answered / row.calls_started) : "–";
  a.cells.completed.textContent = ended ? pct.format(row.calls_completed / ended) : "–";
  a.cells.minutes.textContent = one.format(row.total_duration_seconds / 60);
  a.cells.cost.textContent = money(row.total_cost);
}

function refreshCounts() {
  const live = [...calls.values()].filter((c) => !c.row.ended_at).length;
  $("calls-count").textContent = int.format(live);
  $("kpi-live").textContent = int.format(live);
  $("calls-empty").hidden = calls.size > 0;
  $("agents-empty").hidden = agents.size > 0;
  let started = 0, answered = 0, completed = 0, failed = 0, seconds = 0;
  let cost = 0n;
  for (const { row } of agents.values()) {
    started += row.calls_started;
    answered += row.calls_answered;
    completed += row.calls_completed;
    failed += row.calls_failed;
    seconds += row.total_duration_seconds;
    cost += micros(row.total_cost);
  }
  $("kpi-calls").textContent = int.format(started);
  $("kpi-answered").textContent = started ? pct.format(answered / started) : "–";
  $("kpi-completed").textContent = completed + failed ? pct.format(completed / (completed + failed)) : "–";
  $("kpi-minutes").textContent = one.format(seconds / 60);
  $("kpi-cost").textContent = money(fromMicros(cost));
}

/** Exact sums of decimal strings, in millionths (the hub's NUMERIC(20,6)). */
function micros(decimal) {
  const [whole, frac = ""] = String(decimal ?? "0").split(".");
  return BigInt(whole) * 1_000_000n + BigInt((frac + "000000").slice(0, 6));
}
function fromMicros(n) {
  return `${n / 1_000_000n}.${String(n % 1_000_000n).padStart(6, "0")}`;
}

// ---------------------------------------------------------------- transcript

function selectCall(callId) {
  if (transcriptSub && selectedCall !== callId) transcriptSub.unsubscribe();
  else if (transcriptSub) return;
  selectedCall = callId;
  for (const c of calls.values()) c.el.classList.toggle("selected", c.row.id === callId);
  $("transcript-call").textContent = short(callId);
  $("transcript").replaceChildren();
  transcriptSeqs.clear();
  const a = analyses.get(callId);
  if (a) showAnalysis(a);
  else $("transcript-analysis").hidden = true;
  transcriptSub = client.subscribe(channels.call(claims.tenant_id, callId), {
    onSnapshot: (s) => {
      $("transcript").replaceChildren();
      transcriptSeqs.clear();
      for (const line of s.transcript) addLine(line);
      if (!s.transcript.length) $("transcript").append(emptyLine("Nothing said yet."));
    },
    onMessage: (m) => addLine(m.data),
  });
}

function emptyLine(text) {
  const li = document.createElement("li");
  li.className = "empty";
  li.textContent = text;
  return li;
}

function addLine(line) {
  if (transcriptSeqs.has(line.seq)) return;
  transcriptSeqs.add(line.seq);
  $("transcript").querySelector(".empty")?.remove();
  const li = document.createElement("li");
  li.dataset.seq = line.seq;
  li.className = line.speaker;
  const who = document.createElement("span");
  who.className = "speaker";
  who.textContent = line.speaker;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = line.text;
  li.append(who, text);
  // Lines can arrive out of seq order across a resubscribe: keep them sorted.
  const after = [...$("transcript").children].find((el) => Number(el.dataset.seq) > line.seq);
  $("transcript").insertBefore(li, after ?? null);
}

function showAnalysis(a) {
  const el = $("transcript-analysis");
  el.hidden = false;
  el.dataset.sentiment = a.sentiment ?? "";
  el.textContent = [a.sentiment, a.lead_category, a.summary].filter(Boolean).join(" · ");
}

// ---------------------------------------------------------------- billing

function setWallet(wallet) {
  const text = `${money(wallet.current_balance)} ${wallet.currency}`;
  $("wallet-balance").textContent = text;
  $("kpi-wallet").textContent = money(wallet.current_balance);
}

function billingMessage(m) {
  const d = m.data;
  switch (m.type) {
    case "billing.wallet":
      return setWallet(d);
    case "billing.charged":
      return addCharge("charged", d.feature_key, `−${money(d.amount)}`, money(d.balance_after), d.occurred_at);
    case "billing.credited":
      return addCharge("credited", d.reason || "credit", `+${money(d.amount)}`, money(d.balance_after), d.occurred_at);
    case "billing.rejected":
      return addCharge("rejected", `${d.feature_key} (insufficient funds)`, money(d.cost), money(d.balance), d.occurred_at);
  }
}

function addCharge(kind, what, amount, balance, at) {
  const tr = document.createElement("tr");
  tr.className = kind;
  for (const [text, cls] of [[clock(at), "num"], [what, "what"], [amount, "r num amount"], [balance, "r num"]]) {
    const td = document.createElement("td");
    td.className = cls;
    td.textContent = text;
    tr.append(td);
  }
  $("charges").prepend(tr);
  while ($("charges").children.length > MAX_CHARGES) $("charges").lastElementChild.remove();
}

// ---------------------------------------------------------------- campaign

function showCampaign(campaignId) {
  campaignSub?.unsubscribe();
  steps.clear();
  $("funnel").replaceChildren();
  $("campaign-id").value = campaignId;
  localStorage.setItem(`${CAMPAIGN_KEY}.${claims.tenant_id}`, campaignId);
  campaignSub = client.subscribe(channels.campaign(claims.tenant_id, campaignId), {
    onSnapshot: (s) => {
      steps.clear();
      for (const row of s.stats) setStep(row);
      renderFunnel();
    },
    onMessage: (m) => {
      if (m.type === "campaign.stats") {
        setStep(m.data);
        renderFunnel();
      }
    },
    onError: (e) => {
      $("funnel").replaceChildren(emptyNote(e.message));
    },
  });
}

$("campaign-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = $("campaign-id").value.trim().toLowerCase();
  if (UUID.test(id) && client) showCampaign(id);
});

function setStep(row) {
  let s = steps.get(row.step_id);
  if (!s) steps.set(row.step_id, (s = new Map()));
  s.set(row.status, row.count);
}

function renderFunnel() {
  const root = $("funnel");
  if (steps.size === 0) {
    root.replaceChildren(emptyNote("No activity yet."));
    return;
  }
  root.querySelector(".empty")?.remove();
  for (const stepId of [...steps.keys()].sort()) {
    const counts = steps.get(stepId);
    let el = root.querySelector(`[data-step-id="${stepId}"]`);
    if (!el) {
      el = document.createElement("div");
      el.className = "step";
      el.dataset.stepId = stepId;
      const title = document.createElement("div");
      title.className = "step-title mono";
      title.textContent = `step ${short(stepId)}`;
      const side = document.createElement("span");
      side.className = "side num";
      title.append(side);
      el.append(title);
      for (const status of FUNNEL) {
        const bar = document.createElement("div");
        bar.className = "bar";
        bar.dataset.status = status;
        bar.innerHTML = `<span class="name"></span><span class="track"><span class="fill"></span></span><span class="n num"></span>`;
        bar.querySelector(".name").textContent = status;
        el.append(bar);
      }
      root.append(el);
    }
    const top = Math.max(1, ...FUNNEL.map((s) => counts.get(s) ?? 0));
    for (const status of FUNNEL) {
      const n = counts.get(status) ?? 0;
      const bar = el.querySelector(`[data-status="${status}"]`);
      bar.querySelector(".fill").style.width = `${(100 * n) / top}%`;
      bar.querySelector(".n").textContent = int.format(n);
    }
    el.querySelector(".side").textContent = FUNNEL_SIDE.map((s) => `${s} ${int.format(counts.get(s) ?? 0)}`).join(" · ");
  }
}

// ---------------------------------------------------------------- assistant

function aiSnapshot(s) {
  for (const r of s.replies) {
    const reply = ensureReply(r.message_id);
    reply.content = r.content;
    reply.done = false;
    renderReply(reply);
  }
  $("assistant-state").textContent = s.replies.length ? "streaming" : "";
}

function aiMessage(m) {
  const d = m.data;
  const reply = ensureReply(d.message_id);
  if (m.type === "ai.reply.delta") {
    if (reply.done) return;
    reply.content += d.delta;
    $("assistant-state").textContent = "streaming";
  } else {
    reply.content = d.content;
    reply.done = true;
    reply.meta = [`${int.format(d.tokens_used)} tokens`, d.model].filter(Boolean).join(" · ");
    $("assistant-state").textContent = "";
  }
  renderReply(reply);
}

function ensureReply(messageId) {
  let reply = replies.get(messageId);
  if (reply) return reply;
  const el = document.createElement("article");
  el.dataset.messageId = messageId;
  el.innerHTML = `<p class="text"></p><p class="meta"></p>`;
  reply = { content: "", done: false, meta: "", el };
  replies.set(messageId, reply);
  const root = $("assistant");
  root.querySelector(".empty")?.remove();
  root.prepend(el);
  // The three latest replies are enough to follow a conversation at a glance.
  while (replies.size > 3) {
    const oldest = replies.keys().next().value;
    replies.get(oldest).el.remove();
    replies.delete(oldest);
  }
  return reply;
}

function renderReply(reply) {
  reply.el.querySelector(".text").textContent = reply.content;
  reply.el.querySelector(".meta").textContent = reply.done ? reply.meta : "…";
  reply.el.classList.toggle("streaming", !reply.done);
}

// ---------------------------------------------------------------- boot

(function boot() {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get("token");
  if (fromUrl) {
    // Out of the address bar (and history, and screen shares) at once.
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : ""));
  }
  const candidate = fromUrl ?? sessionStorage.getItem(TOKEN_KEY);
  if (!candidate) return;
  const error = start(candidate);
  if (error) openSignIn(error);
})();
