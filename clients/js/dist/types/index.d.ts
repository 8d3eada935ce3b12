/**
 * @lad/live-client: the LAD live hub's WebSocket protocol (contract §7) for
 * browsers and Node. See README.md at the repository root, "Connect from a browser".
 */
export { LiveClient } from "./client.js";
export type { ConnectionState, HubError, LiveClientOptions, LiveMessage, SnapshotInfo, StatusEvent, SubscribeHandlers, TokenProvider, WebSocketConstructor, WebSocketLike, } from "./client.js";
export { backoffCap, backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export { canSeeBilling, decodeToken, tokenExpiryMs } from "./jwt.js";
export type { TokenClaims } from "./jwt.js";
export { channelKind, channels } from "./channels.js";
export type { KindOf } from "./channels.js";
export { RecentIds } from "./recent.js";
export type * from "./generated/messages.js";
