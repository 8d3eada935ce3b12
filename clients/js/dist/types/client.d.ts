import { type BackoffOptions } from "./backoff.js";
import { type KindOf } from "./channels.js";
import type { ChannelKind, LiveDataByType, MessageTypesByKind, SnapshotByKind } from "./generated/messages.js";
/** Returns the token to connect with: called again after 4001, before `exp`, and after failed attempts. */
export type TokenProvider = () => string | Promise<string>;
/** The part of the WebSocket API the client uses (the browser's, or `ws` in Node). */
export interface WebSocketLike {
    readonly readyState: number;
    onopen: ((ev: unknown) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
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
    onRecovered?: (info: {
        position: string;
    }) => void;
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
/**
 * A connection to the hub that survives disconnects: it resubscribes every
 * channel with `since` (its last position), drops repeated messages by `id`,
 * keeps its token fresh and reconnects with exponential backoff and jitter.
 */
export declare class LiveClient {
    private readonly options;
    private readonly opts;
    private readonly url;
    private readonly provider;
    private readonly WS;
    private readonly subs;
    private readonly requests;
    private conn;
    /** The connection being opened to replace `conn` with a fresher token. */
    private successor;
    private token;
    private freshTokenNeeded;
    private attempt;
    private nextRequestId;
    private started;
    private stopped;
    private everOpened;
    private state;
    private reconnectTimer;
    private refreshTimer;
    private pingTimer;
    private deadTimer;
    private stableTimer;
    constructor(options: LiveClientOptions);
    /** The connection state last reported through `onStatus`. */
    get status(): ConnectionState | null;
    /** Opens the connection (subscriptions made before are sent once it is open). */
    connect(): this;
    /** Closes the connection for good; no reconnect follows. */
    close(): void;
    /**
     * Subscribes to `channel`. The snapshot comes to `onSnapshot`, then every
     * message to `onMessage`; after a reconnect either `onRecovered` (missed
     * messages follow) or `onSnapshot` again (reset the view from it).
     */
    subscribe<C extends string>(channel: C, handlers: SubscribeHandlers<KindOf<C>>): {
        unsubscribe: () => void;
    };
    /** Stops the channel's messages; nothing more reaches its handlers. */
    unsubscribe(channel: string): void;
    /** The last position seen on `channel` (what a resubscribe sends as `since`). */
    position(channel: string): string | null;
    private open;
    private currentToken;
    private openSocket;
    private onOpen;
    private resubscribeAll;
    private sendSubscribe;
    private send;
    private onClose;
    private scheduleReconnect;
    /** Gives up on a connection that stopped answering and reconnects. */
    private drop;
    private startHeartbeat;
    /** Any frame proves the connection alive (a pong queued behind messages comes late). */
    private alive;
    private scheduleRefresh;
    private refresh;
    private retryRefresh;
    /** Make before break: the fresher connection takes over once it is open. */
    private onSuccessorOpen;
    private onSuccessorClose;
    private onFrame;
    private onSubscribed;
    /** One resubscribe of a reconnect answered; `recovered` once all are. */
    private answered;
    private onMessage;
    private onHubError;
    private setStatus;
    private reportError;
    private clearTimers;
}
