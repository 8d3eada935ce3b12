import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff.js";
import { type KindOf } from "./channels.js";
import type {
  ChannelKind,
  LiveDataByType,
  MessageTypesByKind,
  SnapshotByKind,
} from "./generated/messages.js";
import { tokenExpiryMs } from "./jwt.js";
import { RecentIds } from "./recent.js";

/** Returns the token to connect with: called again after 4001, before `exp`, and after failed attempts. */
export type TokenProvider = () => string | Promise<string>;

/** The part of the WebSocket API the client uses (the browser's, or `ws` in Node). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** One live message, its `data` typed by its `type`. */
export type LiveMessage<T extends keyof LiveDataByType = keyof LiveDataByType> = {
  [K in T]: {
    op: "message";
    /** Stable across redeliveries; repeats are dropped before `onMessage`. */
    id?: string;
    tenant_id: string;
    channel: string;
    type: K;
    position: string;
    data: LiveDataByType[K];
  };
}[T];

/** What the hub answered to a subscribe or unsubscribe it refused. */
export interface HubError {
  code: "forbidden" | "bad_request" | "unknown_channel" | "not_subscribed" | "internal" | "rate_limited" | (string & {});
  message: string;
  channel?: string;
}

export interface SnapshotInfo {
  /** The position the channel's messages continue from. */
  position: string;
  /** True when this snapshot replaces state built on an earlier connection (the hub could not resume). */
  reset: boolean;
}

export interface SubscribeHandlers<K extends ChannelKind = ChannelKind> {
  /** The channel's state is exactly this snapshot: reset the view from it. */
  onSnapshot?: (snapshot: SnapshotByKind[K], info: SnapshotInfo) => void;
  /** After a reconnect the hub resumed from the last position: the missed messages follow. */
  onRecovered?: (info: { position: string }) => void;
  /** A live message, in order, never a repeat. */
  onMessage?: (message: LiveMessage<MessageTypesByKind[K]>) => void;
  /** The hub refused the subscription for good (`forbidden`, `unknown_channel`, `bad_request`). */
  onError?: (error: HubError) => void;
}

export type ConnectionState = "connecting" | "live" | "reconnecting" | "recovered" | "closed";

export interface StatusEvent {
  state: ConnectionState;
  /** Close code of the connection that ended (reconnecting). */
  code?: number;
  /** Why the connection ended or the attempt failed (reconnecting). */
  reason?: string;
  /** Failed attempts in a row so far (reconnecting). */
  attempt?: number;
  /** Delay before the next attempt, in ms (reconnecting). */
  retryInMs?: number;
  /** Channels resumed from their last position (recovered). */
  resumed?: number;
  /** Channels reset from a fresh snapshot (recovered). */
  reset?: number;
}

export interface LiveClientOptions {
  /** `ws(s)://host/v1/ws`. In a browser it defaults to the page's own host. */
  url?: string;
  /** A token, or a function that returns one (possibly a promise). */
  token: string | TokenProvider;
  /** The WebSocket constructor; defaults to `globalThis.WebSocket` (Node 20 has none: pass `ws`). */
  WebSocket?: WebSocketConstructor;
  backoff?: Partial<BackoffOptions>;
  /** A connection open this long counts as healthy: the next failure starts the backoff over. */
  stableAfterMs?: number;
  /** Ping the hub this often... */
  pingIntervalMs?: number;
  /** ...and drop the connection when nothing at all arrives within this much after a ping. */
  pongTimeoutMs?: number;
  /** Get a new token this long before the current one's `exp` and switch connections seamlessly. */
  refreshBeforeExpMs?: number;
  /** Message ids remembered per channel to drop repeats. */
  recentIds?: number;
  onStatus?: (status: StatusEvent) => void;
  /** Problems that belong to no subscription (an unreadable frame, a token provider that threw). */
  onError?: (error: HubError | Error) => void;
  /** Random source of the backoff jitter (tests pin it). */
  random?: () => number;
}

interface Subscription {
  channel: string;
  handlers: SubscribeHandlers;
  position: string | null;
  recent: RecentIds;
  /** The id of the subscribe request in flight, if any. */
  requestId: number | null;
  /** Whether the hub answered `subscribed` on the current connection. */
  active: boolean;
  /** Whether a snapshot was ever delivered (a later one is a reset). */
  delivered: boolean;
  retries: number;
  retryTimer: ReturnType<typeof setTimeout> | null;
}

interface Connection {
  ws: WebSocketLike;
  token: string;
  opened: boolean;
  openedAt: number;
  /** A reconnect (report `recovered` once every channel is answered). */
  resuming: boolean;
  resumed: number;
  reset: number;
  /** The channels whose resubscribe is not answered yet. */
  awaiting: Set<string>;
}

const OPEN = 1;
/** Codes after which the same token is still good. Any other failure asks the provider again. */
const TOKEN_EXPIRED = 4001;
/** Client-side close code for a connection that stopped answering. */
const CLOSE_DEAD = 4000;
const RETRYABLE_ERRORS = new Set(["internal", "rate_limited"]);

/**
 * A connection to the hub that survives disconnects: it resubscribes every
 * channel with `since` (its last position), drops repeated messages by `id`,
 * keeps its token fresh and reconnects with exponential backoff and jitter.
 */
export class LiveClient {
  private readonly opts: Required<
    Omit<LiveClientOptions, "url" | "token" | "WebSocket" | "backoff" | "onStatus" | "onError">
  > & { backoff: BackoffOptions };
  private readonly url: string;
  private readonly provider: TokenProvider;
  private readonly WS: WebSocketConstructor;
  private readonly subs = new Map<string, Subscription>();
  private readonly requests = new Map<number, string>();
  private conn: Connection | null = null;
  /** The connection being opened to replace `conn` with a fresher token. */
  private successor: Connection | null = null;
  private token: string | null = null;
  private freshTokenNeeded = true;
  private attempt = 0;
  private nextRequestId = 1;
  private started = false;
  private stopped = false;
  private everOpened = false;
  private state: ConnectionState | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private deadTimer: ReturnType<typeof setTimeout> | null = null;
  private stableTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly options: LiveClientOptions) {
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) throw new Error("no WebSocket implementation: pass the `WebSocket` option (e.g. the `ws` package in Node)");
    this.WS = WS;
    this.url = options.url ?? defaultUrl();
    const token = options.token;
    this.provider = typeof token === "function" ? token : () => token;
    this.opts = {
      backoff: { ...DEFAULT_BACKOFF, ...options.backoff },
      stableAfterMs: options.stableAfterMs ?? 5_000,
      pingIntervalMs: options.pingIntervalMs ?? 15_000,
      pongTimeoutMs: options.pongTimeoutMs ?? 10_000,
      refreshBeforeExpMs: options.refreshBeforeExpMs ?? 60_000,
      recentIds: options.recentIds ?? 2_048,
      random: options.random ?? Math.random,
    };
  }

  /** The connection state last reported through `onStatus`. */
  get status(): ConnectionState | null {
    return this.state;
  }

  /** Opens the connection (subscriptions made before are sent once it is open). */
  connect(): this {
    if (!this.started && !this.stopped) {
      this.started = true;
      void this.open();
    }
    return this;
  }

  /** Closes the connection for good; no reconnect follows. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimers();
    for (const sub of this.subs.values()) clearSubRetry(sub);
    for (const c of [this.conn, this.successor]) if (c) detach(c, 1000, "client closed");
    this.conn = this.successor = null;
    this.setStatus({ state: "closed" });
  }

  /**
   * Subscribes to `channel`. The snapshot comes to `onSnapshot`, then every
   * message to `onMessage`; after a reconnect either `onRecovered` (missed
   * messages follow) or `onSnapshot` again (reset the view from it).
   */
  subscribe<C extends string>(channel: C, handlers: SubscribeHandlers<KindOf<C>>): { unsubscribe: () => void } {
    if (this.subs.has(channel)) throw new Error(`already subscribed to ${channel}`);
    const sub: Subscription = {
      channel,
      handlers: handlers as SubscribeHandlers,
      position: null,
      recent: new RecentIds(this.opts.recentIds),
      requestId: null,
      active: false,
      delivered: false,
      retries: 0,
      retryTimer: null,
    };
    this.subs.set(channel, sub);
    if (this.conn?.opened) this.sendSubscribe(this.conn, sub);
    return { unsubscribe: () => this.unsubscribe(channel) };
  }

  /** Stops the channel's messages; nothing more reaches its handlers. */
  unsubscribe(channel: string): void {
    const sub = this.subs.get(channel);
    if (!sub) return;
    this.subs.delete(channel);
    clearSubRetry(sub);
    if (sub.requestId !== null) {
      this.requests.delete(sub.requestId);
      // A reconnect waiting for this channel's answer waits no more.
      if (this.conn) this.answered(this.conn, channel);
    }
    if (this.conn?.opened && (sub.active || sub.requestId !== null)) {
      this.send(this.conn, { op: "unsubscribe", id: this.nextRequestId++, channel });
    }
  }

  /** The last position seen on `channel` (what a resubscribe sends as `since`). */
  position(channel: string): string | null {
    return this.subs.get(channel)?.position ?? null;
  }

  // ---------------------------------------------------------------- connecting

  private async open(): Promise<void> {
    this.reconnectTimer = null;
    if (this.stopped) return;
    this.setStatus(
      this.everOpened
        ? { state: "reconnecting", attempt: this.attempt }
        : { state: "connecting", attempt: this.attempt },
    );
    let token: string;
    try {
      token = await this.currentToken();
    } catch (err) {
      this.reportError(err instanceof Error ? err : new Error(String(err)));
      this.scheduleReconnect(undefined, "token provider failed");
      return;
    }
    if (this.stopped) return;
    const exp = tokenExpiryMs(token);
    if (exp !== null && exp <= Date.now()) {
      // The hub would refuse it with a 401 the browser cannot read: say why here.
      this.freshTokenNeeded = true;
      this.scheduleReconnect(undefined, "token expired");
      return;
    }
    const conn = this.openSocket(token, false);
    this.conn = conn;
  }

  private async currentToken(): Promise<string> {
    if (this.freshTokenNeeded || this.token === null) {
      this.token = await this.provider();
      this.freshTokenNeeded = false;
    }
    return this.token;
  }

  private openSocket(token: string, successor: boolean): Connection {
    const ws = new this.WS(withToken(this.url, token));
    const conn: Connection = {
      ws,
      token,
      opened: false,
      openedAt: 0,
      resuming: false,
      resumed: 0,
      reset: 0,
      awaiting: new Set(),
    };
    ws.onopen = () => (successor ? this.onSuccessorOpen(conn) : this.onOpen(conn));
    ws.onmessage = (ev) => this.onFrame(conn, ev.data);
    ws.onclose = (ev) => (successor && conn !== this.conn ? this.onSuccessorClose(conn) : this.onClose(conn, ev.code, ev.reason));
    ws.onerror = () => {
      // A close event always follows; it carries the code.
    };
    return conn;
  }

  private onOpen(conn: Connection): void {
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

  private resubscribeAll(conn: Connection): void {
    conn.awaiting.clear();
    for (const sub of this.subs.values()) {
      sub.active = false;
      clearSubRetry(sub);
      this.sendSubscribe(conn, sub);
      conn.awaiting.add(sub.channel);
    }
  }

  private sendSubscribe(conn: Connection, sub: Subscription): void {
    if (sub.requestId !== null) this.requests.delete(sub.requestId);
    const id = this.nextRequestId++;
    sub.requestId = id;
    this.requests.set(id, sub.channel);
    const frame: Record<string, unknown> = { op: "subscribe", id, channel: sub.channel };
    if (sub.position !== null) frame.since = sub.position;
    this.send(conn, frame);
  }

  private send(conn: Connection, frame: Record<string, unknown>): void {
    if (conn.ws.readyState === OPEN) conn.ws.send(JSON.stringify(frame));
  }

  private onClose(conn: Connection, code: number, reason: string): void {
    if (conn !== this.conn) return;
    this.conn = null;
    this.clearTimers();
    if (this.successor) {
      detach(this.successor, 1000, "replaced");
      this.successor = null;
    }
    for (const sub of this.subs.values()) {
      sub.active = false;
      clearSubRetry(sub);
    }
    if (this.stopped) return;
    if (code === TOKEN_EXPIRED) {
      // The token ran out on an open connection: a new one, at once.
      this.freshTokenNeeded = true;
      if (conn.opened) {
        this.setStatus({ state: "reconnecting", code, reason: reason || "token expired", attempt: 0, retryInMs: 0 });
        this.reconnectTimer = setTimeout(() => void this.open(), 0);
        return;
      }
    }
    if (!conn.opened) {
      // Refused before the upgrade completed: a 401 looks like this (1006) in a
      // browser, so the next attempt asks the provider for a token again.
      this.freshTokenNeeded = true;
    } else if (Date.now() - conn.openedAt >= this.opts.stableAfterMs) {
      this.attempt = 0;
    }
    this.scheduleReconnect(code, reason || closeReason(code));
  }

  private scheduleReconnect(code: number | undefined, reason: string): void {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt, this.opts.backoff, this.opts.random);
    this.attempt++;
    this.setStatus({ state: "reconnecting", code, reason, attempt: this.attempt, retryInMs: delay });
    this.reconnectTimer = setTimeout(() => void this.open(), delay);
  }

  /** Gives up on a connection that stopped answering and reconnects. */
  private drop(conn: Connection, reason: string): void {
    if (conn !== this.conn) return;
    detach(conn, CLOSE_DEAD, reason);
    this.onClose(conn, CLOSE_DEAD, reason);
  }

  // ---------------------------------------------------------------- liveness

  private startHeartbeat(conn: Connection): void {
    this.pingTimer = setInterval(() => {
      if (conn !== this.conn) return;
      this.send(conn, { op: "ping", id: this.nextRequestId++ });
      if (this.deadTimer === null) {
        this.deadTimer = setTimeout(() => this.drop(conn, "no answer to ping"), this.opts.pongTimeoutMs);
      }
    }, this.opts.pingIntervalMs);
  }

  /** Any frame proves the connection alive (a pong queued behind messages comes late). */
  private alive(): void {
    if (this.deadTimer !== null) {
      clearTimeout(this.deadTimer);
      this.deadTimer = null;
    }
  }

  // ---------------------------------------------------------------- token refresh

  private scheduleRefresh(conn: Connection): void {
    const exp = tokenExpiryMs(conn.token);
    if (exp === null) return;
    const remaining = exp - Date.now();
    // Half the remaining lifetime when the token is already within the window,
    // so a short-lived token is still replaced before the hub closes with 4001.
    const delay = Math.max(remaining - this.opts.refreshBeforeExpMs, remaining / 2, 0);
    this.refreshTimer = setTimeout(() => void this.refresh(conn), Math.min(delay, 2 ** 31 - 1));
  }

  private async refresh(conn: Connection): Promise<void> {
    this.refreshTimer = null;
    if (conn !== this.conn || this.stopped) return;
    let token: string;
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
      // No newer token yet: the hub closes with 4001 at `exp` and the provider is asked again then.
      return this.retryRefresh(conn);
    }
    this.token = token;
    this.successor = this.openSocket(token, true);
  }

  private retryRefresh(conn: Connection): void {
    const exp = tokenExpiryMs(conn.token);
    if (exp === null) return;
    const remaining = exp - Date.now();
    if (remaining > 2_000) {
      this.refreshTimer = setTimeout(() => void this.refresh(conn), Math.min(remaining / 2, 30_000));
    }
  }

  /** Make before break: the fresher connection takes over once it is open. */
  private onSuccessorOpen(next: Connection): void {
    if (next !== this.successor || this.stopped || !this.conn) {
      detach(next, 1000, "not needed");
      return;
    }
    const previous = this.conn;
    this.successor = null;
    this.clearTimers();
    detach(previous, 1000, "token refreshed");
    this.conn = next;
    next.opened = true;
    next.openedAt = Date.now();
    // Seamless: no status change, each channel resumes from its position.
    next.resuming = false;
    this.startHeartbeat(next);
    this.scheduleRefresh(next);
    for (const sub of this.subs.values()) {
      clearSubRetry(sub);
      this.sendSubscribe(next, sub);
    }
  }

  private onSuccessorClose(next: Connection): void {
    if (next !== this.successor) return;
    this.successor = null;
    if (this.conn) this.retryRefresh(this.conn);
  }

  // ---------------------------------------------------------------- frames

  private onFrame(conn: Connection, data: unknown): void {
    if (conn !== this.conn) return;
    this.alive();
    let frame: Record<string, unknown>;
    try {
      const text = typeof data === "string" ? data : new TextDecoder().decode(data as ArrayBuffer);
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
        // pong, unsubscribed: their arrival already proved the connection alive.
        return;
    }
  }

  private onSubscribed(conn: Connection, frame: Record<string, unknown>): void {
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
      sub.handlers.onSnapshot?.(frame.snapshot as never, { position, reset });
    }
    this.answered(conn, sub.channel);
  }

  /** One resubscribe of a reconnect answered; `recovered` once all are. */
  private answered(conn: Connection, channel: string): void {
    if (!conn.resuming || !conn.awaiting.delete(channel)) return;
    if (conn.awaiting.size === 0) this.setStatus({ state: "recovered", resumed: conn.resumed, reset: conn.reset });
  }

  private onMessage(frame: Record<string, unknown>): void {
    const sub = this.subs.get(String(frame.channel));
    if (!sub || !sub.active) return;
    if (typeof frame.id === "string" && !sub.recent.add(frame.id)) return;
    if (typeof frame.position === "string") sub.position = frame.position;
    sub.handlers.onMessage?.(frame as never);
  }

  private onHubError(conn: Connection, frame: Record<string, unknown>): void {
    const error: HubError = { code: String(frame.code), message: String(frame.message ?? "") };
    const channel = typeof frame.id === "number" ? this.requests.get(frame.id) : undefined;
    const sub = channel === undefined ? undefined : this.subs.get(channel);
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

  private setStatus(status: StatusEvent): void {
    this.state = status.state;
    this.options.onStatus?.(status);
  }

  private reportError(error: HubError | Error): void {
    this.options.onError?.(error);
  }

  private clearTimers(): void {
    for (const t of [this.reconnectTimer, this.refreshTimer, this.deadTimer, this.stableTimer]) {
      if (t !== null) clearTimeout(t);
    }
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    this.reconnectTimer = this.refreshTimer = this.deadTimer = this.stableTimer = this.pingTimer = null;
  }
}

function clearSubRetry(sub: Subscription): void {
  if (sub.retryTimer !== null) clearTimeout(sub.retryTimer);
  sub.retryTimer = null;
}

/** Forgets a connection: none of its events reach the client any more. */
function detach(conn: Connection, code: number, reason: string): void {
  const ws = conn.ws;
  ws.onopen = ws.onmessage = ws.onerror = null;
  ws.onclose = null;
  try {
    ws.close(code, reason);
  } catch {
    // Closing a socket that never connected can throw in some implementations.
  }
}

function withToken(url: string, token: string): string {
  const u = new URL(url);
  u.searchParams.set("token", token);
  return u.toString();
}

function defaultUrl(): string {
  const loc = (globalThis as { location?: { protocol: string; host: string } }).location;
  if (!loc) throw new Error("the `url` option is required outside a browser");
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/v1/ws`;
}

function closeReason(code: number): string {
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
