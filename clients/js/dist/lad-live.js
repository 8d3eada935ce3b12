// @lad/live-client 0.1.0: built from clients/js/src by scripts/build.mjs. Do not edit.

// src/backoff.ts
var DEFAULT_BACKOFF = { initialMs: 500, maxMs: 15e3, factor: 2 };
function backoffDelay(attempt, options = DEFAULT_BACKOFF, random = Math.random) {
  const cap = backoffCap(attempt, options);
  return Math.round(cap / 2 + random() * cap / 2);
}
function backoffCap(attempt, options = DEFAULT_BACKOFF) {
  const grown = options.initialMs * Math.pow(options.factor, Math.max(0, attempt));
  return Math.min(options.maxMs, Number.isFinite(grown) ? grown : options.maxMs);
}

// src/channels.ts
var channels = {
  calls: (tenantId) => `tenant:${lower(tenantId)}:calls`,
  call: (tenantId, callId) => `tenant:${lower(tenantId)}:call:${lower(callId)}`,
  campaign: (tenantId, campaignId) => `tenant:${lower(tenantId)}:campaign:${lower(campaignId)}`,
  billing: (tenantId) => `tenant:${lower(tenantId)}:billing`,
  ai: (tenantId, userId) => `tenant:${lower(tenantId)}:user:${lower(userId)}:ai`
};
function channelKind(channel) {
  const m = /^tenant:[0-9a-f-]{36}:(calls|billing|call:[0-9a-f-]{36}|campaign:[0-9a-f-]{36}|user:[0-9a-f-]{36}:ai)$/.exec(
    channel
  );
  if (!m) return null;
  const rest = m[1];
  if (rest.endsWith(":ai")) return "ai";
  return rest.split(":")[0];
}
function lower(id) {
  return id.toLowerCase();
}

// src/jwt.ts
function decodeToken(token) {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(b64 + "=".repeat((4 - b64.length % 4) % 4));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims !== null && typeof claims === "object" && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}
function tokenExpiryMs(token) {
  const exp = decodeToken(token)?.exp;
  return typeof exp === "number" && Number.isFinite(exp) ? exp * 1e3 : null;
}
function canSeeBilling(claims) {
  if (!claims) return false;
  return claims.role === "owner" || claims.role === "admin" || Array.isArray(claims.caps) && claims.caps.includes("billing.view");
}

// src/recent.ts
var RecentIds = class {
  constructor(capacity) {
    this.capacity = capacity;
  }
  ids = /* @__PURE__ */ new Set();
  order = [];
  next = 0;
  /** Records `id`; false when it was already among the recent ones. */
  add(id) {
    if (this.ids.has(id)) return false;
    if (this.order.length < this.capacity) {
      this.order.push(id);
    } else {
      this.ids.delete(this.order[this.next]);
      this.order[this.next] = id;
      this.next = (this.next + 1) % this.capacity;
    }
    this.ids.add(id);
    return true;
  }
  get size() {
    return this.ids.size;
  }
};

// src/client.ts
var OPEN = 1;
var TOKEN_EXPIRED = 4001;
var CLOSE_DEAD = 4e3;
var RETRYABLE_ERRORS = /* @__PURE__ */ new Set(["internal", "rate_limited"]);
var LiveClient = class {
  constructor(options) {
    this.options = options;
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (!WS) throw new Error("no WebSocket implementation: pass the `WebSocket` option (e.g. the `ws` package in Node)");
    this.WS = WS;
    this.url = options.url ?? defaultUrl();
    const token = options.token;
    this.provider = typeof token === "function" ? token : () => token;
    this.opts = {
      backoff: { ...DEFAULT_BACKOFF, ...options.backoff },
      stableAfterMs: options.stableAfterMs ?? 5e3,
      pingIntervalMs: options.pingIntervalMs ?? 15e3,
      pongTimeoutMs: options.pongTimeoutMs ?? 1e4,
      refreshBeforeExpMs: options.refreshBeforeExpMs ?? 6e4,
      recentIds: options.recentIds ?? 2048,
      random: options.random ?? Math.random
    };
  }
  opts;
  url;
  provider;
  WS;
  subs = /* @__PURE__ */ new Map();
  requests = /* @__PURE__ */ new Map();
  conn = null;
  /** The connection being opened to replace `conn` with a fresher token. */
  successor = null;
  token = null;
  freshTokenNeeded = true;
  attempt = 0;
  nextRequestId = 1;
  started = false;
  stopped = false;
  everOpened = false;
  state = null;
  reconnectTimer = null;
  refreshTimer = null;
  pingTimer = null;
  deadTimer = null;
  stableTimer = null;
  /** The connection state last reported through `onStatus`. */
  get status() {
    return this.state;
  }
  /** Opens the connection (subscriptions made before are sent once it is open). */
  connect() {
    if (!this.started && !this.stopped) {
      this.started = true;
      void this.open();
    }
    return this;
  }
  /** Closes the connection for good; no reconnect follows. */
  close() {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimers();
    for (const sub of this.subs.values()) clearSubRetry(sub);
    for (const c of [this.conn, this.successor]) if (c) detach(c, 1e3, "client closed");
    this.conn = this.successor = null;
    this.setStatus({ state: "closed" });
  }
  /**
   * Subscribes to `channel`. The snapshot comes to `onSnapshot`, then every
   * message to `onMessage`; after a reconnect either `onRecovered` (missed
   * messages follow) or `onSnapshot` again (reset the view from it).
   */
  subscribe(channel, handlers) {
    if (this.subs.has(channel)) throw new Error(`already subscribed to ${channel}`);
    const sub = {
      channel,
      handlers,
      position: null,
      recent: new RecentIds(this.opts.recentIds),
      requestId: null,
      active: false,
      delivered: false,
      retries: 0,
      retryTimer: null
    };
    this.subs.set(channel, sub);
    if (this.conn?.opened) this.sendSubscribe(this.conn, sub);
    return { unsubscribe: () => this.unsubscribe(channel) };
  }
  /** Stops the channel's messages; nothing more reaches its handlers. */
  unsubscribe(channel) {
    const sub = this.subs.get(channel);
    if (!sub) return;
    this.subs.delete(channel);
    clearSubRetry(sub);
    if (sub.requestId !== null) {
      this.requests.delete(sub.requestId);
      if (this.conn) this.answered(this.conn, channel);
    }
    if (this.conn?.opened && (sub.active || sub.requestId !== null)) {
      this.send(this.conn, { op: "unsubscribe", id: this.nextRequestId++, channel });
    }
  }
  /** The last position seen on `channel` (what a resubscribe sends as `since`). */
  position(channel) {
    return this.subs.get(channel)?.position ?? null;
  }
  // ---------------------------------------------------------------- connecting
  async open() {
    this.reconnectTimer = null;
    if (this.stopped) return;
    this.setStatus(
      this.everOpened ? { state: "reconnecting", attempt: this.attempt } : { state: "connecting", attempt: this.attempt }
    );
    let token;
    try {
      token = await this.currentToken();
    } catch (err) {
      this.reportError(err instanceof Error ? err : new Error(String(err)));
      this.scheduleReconnect(void 0, "token provider failed");
      return;
    }
    if (this.stopped) return;
    const exp = tokenExpiryMs(token);
    if (exp !== null && exp <= Date.now()) {
      this.freshTokenNeeded = true;
      this.scheduleReconnect(void 0, "token expired");
      return;
    }
    const conn = this.openSocket(token, false);
    this.conn = conn;
  }
  async currentToken() {
    if (this.freshTokenNeeded || this.token === null) {
      this.token = await this.provider();
      this.freshTokenNeeded = false;
    }
    return this.token;
  }
  openSocket(token, successor) {
    const ws = new this.WS(withToken(this.url, token));
    const conn = {
      ws,
      token,
      opened: false,
      openedAt: 0,
      resuming: false,
      resumed: 0,
      reset: 0,
      awaiting: /* @__PURE__ */ new Set()
    };
    ws.onopen = () => successor ? this.onSuccessorOpen(conn) : this.onOpen(conn);
    ws.onmessage = (ev) => this.onFrame(conn, ev.data);
    ws.onclose = (ev) => successor && conn !== this.conn ? this.onSuccessorClose(conn) : this.onClose(conn, ev.code, ev.reason);
    ws.onerror = () => {
    };
    return conn;
  }
  onOpen(conn) {
    if (conn !== this.conn || this.stopped) return;
    conn.opened = true;
    conn.openedAt = Date.now();
    conn.resuming = this.everOpened;
    this.everOpened = true;
    this.stableTimer = setTimeout(() => {
      this.attempt = 0;
    }, this.opts.stableAfterMs);
    this.startHeartbeat(conn);
    this.scheduleRefresh(conn);
    this.resubscribeAll(conn);
    if (!conn.resuming) this.setStatus({ state: "live" });
    else if (conn.awaiting.size === 0) this.setStatus({ state: "recovered", resumed: 0, reset: 0 });
  }
  resubscribeAll(conn) {
    conn.awaiting.clear();
    for (const sub of this.subs.values()) {
      sub.active = false;
      clearSubRetry(sub);
      this.sendSubscribe(conn, sub);
      conn.awaiting.add(sub.channel);
    }
  }
  sendSubscribe(conn, sub) {
    if (sub.requestId !== null) this.requests.delete(sub.requestId);
    const id = this.nextRequestId++;
    sub.requestId = id;
    this.requests.set(id, sub.channel);
    const frame = { op: "subscribe", id, channel: sub.channel };
    if (sub.position !== null) frame.since = sub.position;
    this.send(conn, frame);
  }
  send(conn, frame) {
    if (conn.ws.readyState === OPEN) conn.ws.send(JSON.stringify(frame));
  }
  onClose(conn, code, reason) {
    if (conn !== this.conn) return;
    this.conn = null;
    this.clearTimers();
    if (this.successor) {
      detach(this.successor, 1e3, "replaced");
      this.successor = null;
    }
    for (const sub of this.subs.values()) {
      sub.active = false;
      clearSubRetry(sub);
    }
    if (this.stopped) return;
    if (code === TOKEN_EXPIRED) {
      this.freshTokenNeeded = true;
      if (conn.opened) {
        this.setStatus({ state: "reconnecting", code, reason: reason || "token expired", attempt: 0, retryInMs: 0 });
        this.reconnectTimer = setTimeout(() => void this.open(), 0);
        return;
      }
    }
    if (!conn.opened) {
      this.freshTokenNeeded = true;
    } else if (Date.now() - conn.openedAt >= this.opts.stableAfterMs) {
      this.attempt = 0;
    }
    this.scheduleReconnect(code, reason || closeReason(code));
  }
  scheduleReconnect(code, reason) {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt, this.opts.backoff, this.opts.random);
    this.attempt++;
    this.setStatus({ state: "reconnecting", code, reason, attempt: this.attempt, retryInMs: delay });
    this.reconnectTimer = setTimeout(() => void this.open(), delay);
  }
  /** Gives up on a connection that stopped answering and reconnects. */
  drop(conn, reason) {
    if (conn !== this.conn) return;
    detach(conn, CLOSE_DEAD, reason);
    this.onClose(conn, CLOSE_DEAD, reason);
  }
  // ---------------------------------------------------------------- liveness
  startHeartbeat(conn) {
    this.pingTimer = setInterval(() => {
      if (conn !== this.conn) return;
      this.send(conn, { op: "ping", id: this.nextRequestId++ });
      if (this.deadTimer === null) {
        this.deadTimer = setTimeout(() => this.drop(conn, "no answer to ping"), this.opts.pongTimeoutMs);
      }
    }, this.opts.pingIntervalMs);
  }
  /** Any frame proves the connection alive (a pong queued behind messages comes late). */
  alive() {
    if (this.deadTimer !== null) {
      clearTimeout(this.deadTimer);
      this.deadTimer = null;
    }
  }
  // ---------------------------------------------------------------- token refresh
  scheduleRefresh(conn) {
    const exp = tokenExpiryMs(conn.token);
    if (exp === null) return;
    const remaining = exp - Date.now();
    const delay = Math.max(remaining - this.opts.refreshBeforeExpMs, remaining / 2, 0);
    this.refreshTimer = setTimeout(() => void this.refresh(conn), Math.min(delay, 2 ** 31 - 1));
  }
  async refresh(conn) {
    this.refreshTimer = null;
    if (conn !== this.conn || this.stopped) return;
    let token;
    try {
      token = await this.provider();
    } catch (err) {
      this.reportError(err instanceof Error ? err : new Error(String(err)));
      return this.retryRefresh(conn);
    }
    if (conn !== this.conn || this.stopped) return;
    const oldExp = tokenExpiryMs(conn.token) ?? 0;
    const newExp = tokenExpiryMs(token);
    if (newExp !== null && newExp <= oldExp) {
      return this.retryRefresh(conn);
    }
    this.token = token;
    this.successor = this.openSocket(token, true);
  }
  retryRefresh(conn) {
    const exp = tokenExpiryMs(conn.token);
    if (exp === null) return;
    const remaining = exp - Date.now();
    if (remaining > 2e3) {
      this.refreshTimer = setTimeout(() => void this.refresh(conn), Math.min(remaining / 2, 3e4));
    }
  }
  /** Make before break: the fresher connection takes over once it is open. */
  onSuccessorOpen(next) {
    if (next !== this.successor || this.stopped || !this.conn) {
      detach(next, 1e3, "not needed");
      return;
    }
    const previous = this.conn;
    this.successor = null;
    this.clearTimers();
    detach(previous, 1e3, "token refreshed");
    this.conn = next;
    next.opened = true;
    next.openedAt = Date.now();
    next.resuming = false;
    this.startHeartbeat(next);
    this.scheduleRefresh(next);
    for (const sub of this.subs.values()) {
      clearSubRetry(sub);
      this.sendSubscribe(next, sub);
    }
  }
  onSuccessorClose(next) {
    if (next !== this.successor) return;
    this.successor = null;
    if (this.conn) this.retryRefresh(this.conn);
  }
  // ---------------------------------------------------------------- frames
  onFrame(conn, data) {
    if (conn !== this.conn) return;
    this.alive();
    let frame;
    try {
      const text = typeof data === "string" ? data : new TextDecoder().decode(data);
      frame = JSON.parse(text);
    } catch {
      this.reportError(new Error("unreadable frame from the hub"));
      return;
    }
    switch (frame.op) {
      case "message":
        return this.onMessage(frame);
      case "subscribed":
        return this.onSubscribed(conn, frame);
      case "error":
        return this.onHubError(conn, frame);
      default:
        return;
    }
  }
  onSubscribed(conn, frame) {
    const sub = this.subs.get(String(frame.channel));
    if (!sub || sub.requestId === null || sub.requestId !== frame.id) return;
    this.requests.delete(sub.requestId);
    sub.requestId = null;
    sub.active = true;
    sub.retries = 0;
    const position = String(frame.position);
    const recovered = frame.recovered === true;
    sub.position = position;
    if (recovered) {
      conn.resumed++;
      sub.handlers.onRecovered?.({ position });
    } else {
      if (sub.delivered) conn.reset++;
      const reset = sub.delivered;
      sub.delivered = true;
      sub.handlers.onSnapshot?.(frame.snapshot, { position, reset });
    }
    this.answered(conn, sub.channel);
  }
  /** One resubscribe of a reconnect answered; `recovered` once all are. */
  answered(conn, channel) {
    if (!conn.resuming || !conn.awaiting.delete(channel)) return;
    if (conn.awaiting.size === 0) this.setStatus({ state: "recovered", resumed: conn.resumed, reset: conn.reset });
  }
  onMessage(frame) {
    const sub = this.subs.get(String(frame.channel));
    if (!sub || !sub.active) return;
    if (typeof frame.id === "string" && !sub.recent.add(frame.id)) return;
    if (typeof frame.position === "string") sub.position = frame.position;
    sub.handlers.onMessage?.(frame);
  }
  onHubError(conn, frame) {
    const error = { code: String(frame.code), message: String(frame.message ?? "") };
    const channel = typeof frame.id === "number" ? this.requests.get(frame.id) : void 0;
    const sub = channel === void 0 ? void 0 : this.subs.get(channel);
    if (!sub || sub.requestId === null || sub.requestId !== frame.id) {
      this.reportError(error);
      return;
    }
    this.requests.delete(sub.requestId);
    sub.requestId = null;
    error.channel = sub.channel;
    if (RETRYABLE_ERRORS.has(error.code)) {
      const delay = backoffDelay(sub.retries++, this.opts.backoff, this.opts.random);
      sub.retryTimer = setTimeout(() => {
        sub.retryTimer = null;
        if (this.conn === conn && this.subs.get(sub.channel) === sub) this.sendSubscribe(conn, sub);
      }, delay);
      return;
    }
    this.subs.delete(sub.channel);
    this.answered(conn, sub.channel);
    sub.handlers.onError?.(error);
  }
  // ---------------------------------------------------------------- helpers
  setStatus(status) {
    this.state = status.state;
    this.options.onStatus?.(status);
  }
  reportError(error) {
    this.options.onError?.(error);
  }
  clearTimers() {
    for (const t of [this.reconnectTimer, this.refreshTimer, this.deadTimer, this.stableTimer]) {
      if (t !== null) clearTimeout(t);
    }
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    this.reconnectTimer = this.refreshTimer = this.deadTimer = this.stableTimer = this.pingTimer = null;
  }
};
function clearSubRetry(sub) {
  if (sub.retryTimer !== null) clearTimeout(sub.retryTimer);
  sub.retryTimer = null;
}
function detach(conn, code, reason) {
  const ws = conn.ws;
  ws.onopen = ws.onmessage = ws.onerror = null;
  ws.onclose = null;
  try {
    ws.close(code, reason);
  } catch {
  }
}
function withToken(url, token) {
  const u = new URL(url);
  u.searchParams.set("token", token);
  return u.toString();
}
function defaultUrl() {
  const loc = globalThis.location;
  if (!loc) throw new Error("the `url` option is required outside a browser");
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/v1/ws`;
}
function closeReason(code) {
  switch (code) {
    case 1001:
      return "hub shutting down";
    case 1006:
      return "connection lost";
    case 1009:
      return "frame too big";
    case 1011:
      return "hub error";
    case 4008:
      return "too slow";
    case 4009:
      return "heartbeat timeout";
    case CLOSE_DEAD:
      return "no answer to ping";
    default:
      return `closed (${code})`;
  }
}
export {
  DEFAULT_BACKOFF,
  LiveClient,
  RecentIds,
  backoffCap,
  backoffDelay,
  canSeeBilling,
  channelKind,
  channels,
  decodeToken,
  tokenExpiryMs
};
