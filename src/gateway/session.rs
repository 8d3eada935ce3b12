//! One task per socket: it reads the client's frames, writes what its
//! delivery queue holds, pings the client, and closes the socket when the
//! token expires (4001), the client falls behind on events or stops reading
//! (4008), stops answering (4009), sends a frame too big (1009) or the hub
//! shuts down (1001).
//!
//! Idle connections must stay small (about 16 KiB each at 10,000 sockets):
//! the queue allocates as it fills, the socket's buffers are sized at the
//! upgrade (`gateway/mod.rs`), and request handling is boxed so its futures
//! do not inflate every session's state. Measured: about 6.5 KiB per idle
//! socket (debug build, 3,000 sockets).

use crate::auth::{unix_now, Claims};
use crate::gateway::authz::{self, Decision};
use crate::gateway::limits::{SubscribeLimiter, TokenBucket};
use crate::gateway::protocol::{self, ClientFrame, ErrorCode, Refusal, RequestId};
use crate::gateway::registry::{Conn, Subscription};
use crate::gateway::Gateway;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use lad_consumers::live::Channel;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_POLICY_VIOLATION: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
pub const CLOSE_TOO_SLOW: u16 = 4008;
pub const CLOSE_NO_PONG: u16 = 4009;

/// Subscriptions one connection may hold, so one socket cannot make the
/// registry grow without bound.
pub const MAX_SUBSCRIPTIONS: usize = 256;
/// Frames written per flush.
const WRITE_BATCH: usize = 64;
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The socket's registrations; dropping it unregisters them all, so a
/// session that ends any way at all leaves nothing behind.
struct Session {
    gw: Gateway,
    conn: Arc<Conn>,
    claims: Claims,
    subscriptions: Vec<Channel>,
    subscribes: SubscribeLimiter,
    frames: TokenBucket,
}

impl Drop for Session {
    fn drop(&mut self) {
        let registry = self.gw.registry();
        for channel in &self.subscriptions {
            registry.unsubscribe(self.conn.id, channel);
        }
        self.gw.connection_closed();
    }
}

enum Close {
    /// The peer went away or closed: nothing more to say.
    Quietly,
    With(u16, &'static str),
}

impl Close {
    const SHUTDOWN: Close = Close::With(CLOSE_GOING_AWAY, "hub shutting down");
    const BEHIND: Close = Close::With(CLOSE_TOO_SLOW, "client too slow: event backlog over budget");
    const STALLED: Close = Close::With(CLOSE_TOO_SLOW, "client too slow: no write progress");
    const EXPIRED: Close = Close::With(CLOSE_TOKEN_EXPIRED, "token expired");
    const SILENT: Close = Close::With(CLOSE_NO_PONG, "no pong");
}

pub async fn serve(gw: Gateway, claims: Claims, mut socket: WebSocket) {
    // Only the settings the loop reads: a clone of the whole config (its
    // secret, its verifier) per socket would cost every connection.
    let (backlog_bytes, stall_timeout, ping_interval, pong_timeout) = {
        let cfg = gw.config();
        (
            cfg.backlog_bytes,
            cfg.stall_timeout,
            cfg.ping_interval,
            cfg.pong_timeout,
        )
    };
    let conn = Conn::new(gw.connection_opened(), backlog_bytes);
    let shutdown = gw.shutdown_token();
    let subscribes = gw.inner.limiter.subscribes(claims.tenant_id, claims.sub);
    let frames = TokenBucket::for_frames(&gw.config().limits);
    let mut session = Session {
        gw,
        conn,
        claims,
        subscriptions: Vec::new(),
        subscribes,
        frames,
    };
    let expiry = tokio::time::sleep_until(expiry_instant(session.claims.exp));
    tokio::pin!(expiry);
    let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Any frame from the client proves it is there; the deadline moves then.
    let silent_for = ping_interval + pong_timeout;
    let silence = tokio::time::sleep(silent_for);
    tokio::pin!(silence);
    let mut batch = Vec::with_capacity(0);

    let close = loop {
        // Unbiased on purpose: under a steady stream of outgoing frames the
        // client's own frames must still be read.
        let out = tokio::select! {
            _ = shutdown.cancelled() => break Close::SHUTDOWN,
            _ = session.conn.kicked() => break Close::BEHIND,
            _ = &mut expiry => break Close::EXPIRED,
            _ = &mut silence => break Close::SILENT,
            _ = ping.tick() => Some(Message::Ping(Default::default())),
            _ = session.conn.ready() => {
                if session.conn.take(WRITE_BATCH, &mut batch) {
                    // More than one batch waits: come back for it after
                    // looking at the client's side.
                    session.conn.wake();
                }
                None
            }
            incoming = socket.next() => {
                silence.as_mut().reset(Instant::now() + silent_for);
                match incoming {
                    // A client that ignores `rate_limited` and keeps sending would
                    // cost the hub a refusal per frame: past its frame budget it is cut.
                    Some(Ok(Message::Text(_) | Message::Binary(_))) if session.frames.take(std::time::Instant::now()).is_err() => {
                        break Close::With(CLOSE_POLICY_VIOLATION, "too many frames");
                    }
                    Some(Ok(Message::Text(text))) => Box::pin(session.handle(text.as_str())).await,
                    Some(Ok(Message::Binary(_))) => {
                        session.reply(protocol::error(&RequestId::Null, ErrorCode::BadRequest, "frames are JSON text"));
                    }
                    // tungstenite answers pings and close frames itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break Close::Quietly,
                    Some(Err(e)) if is_too_big(&e) => break Close::With(CLOSE_TOO_BIG, "frame too big"),
                    Some(Err(_)) => break Close::Quietly,
                }
                None
            }
        };
        if batch.is_empty() && out.is_none() {
            continue;
        }
        // Racing the write against the other exits: a client that stopped
        // reading blocks the write, and must still be closed.
        let written = tokio::select! {
            biased;
            _ = shutdown.cancelled() => Err(Close::SHUTDOWN),
            _ = session.conn.kicked() => Err(Close::BEHIND),
            _ = &mut expiry => Err(Close::EXPIRED),
            r = tokio::time::timeout(stall_timeout, write(&mut socket, &mut batch, out)) => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Close::Quietly),
                Err(_) => Err(Close::STALLED),
            },
        };
        if let Err(close) = written {
            break close;
        }
    };
    if let Close::With(code, _) = close {
        metrics::counter!("lad_ws_closes_total", "code" => code.to_string()).increment(1);
    }
    match close {
        Close::With(code, reason) => {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ =
                tokio::time::timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
        }
        // Sends the close reply tungstenite queued, if the peer closed.
        Close::Quietly => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.flush()).await;
        }
    }
}

/// Writes `batch` (emptied) and `extra`, then flushes once.
async fn write(
    socket: &mut WebSocket,
    batch: &mut Vec<Utf8Bytes>,
    extra: Option<Message>,
) -> Result<(), axum::Error> {
    for frame in batch.drain(..) {
        socket.feed(Message::Text(frame)).await?;
    }
    if batch.capacity() > WRITE_BATCH {
        batch.shrink_to(WRITE_BATCH);
    }
    if let Some(message) = extra {
        socket.feed(message).await?;
    }
    socket.flush().await
}

fn is_too_big(e: &axum::Error) -> bool {
    use std::error::Error as _;
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error};
    matches!(
        e.source().and_then(|s| s.downcast_ref::<Error>()),
        Some(Error::Capacity(CapacityError::MessageTooLong { .. }))
    )
}

/// Far enough to outlive any process, near enough that adding it to the
/// monotonic clock cannot overflow (a token may say `exp: i64::MAX`).
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 365 * 24 * 3600);

fn expiry_instant(exp: i64) -> Instant {
    let left = Duration::from_secs(exp.saturating_sub(unix_now()).max(0) as u64);
    Instant::now() + left.min(MAX_TOKEN_LIFETIME)
}

impl Session {
    /// Queued like every other frame, so replies keep their order with the
    /// channel messages around them.
    fn reply(&self, frame: String) {
        self.conn.send_frame(frame);
    }

    async fn handle(&mut self, text: &str) {
        let outcome = match protocol::parse(text) {
            Err(refusal) => Err(refusal),
            Ok(ClientFrame::Ping { id }) => {
                self.reply(protocol::pong(&id));
                Ok(())
            }
            Ok(ClientFrame::Unsubscribe { id, channel }) => self.unsubscribe(id, &channel),
            Ok(ClientFrame::Subscribe { id, channel, since }) => {
                self.subscribe(id, &channel, since.as_deref()).await
            }
        };
        if let Err(refusal) = outcome {
            metrics::counter!(lad_consumers::metrics::WS_REQUESTS_REFUSED, "code" => refusal.code.as_str())
                .increment(1);
            self.reply(refusal.to_frame());
        }
    }

    fn unsubscribe(&mut self, id: RequestId, name: &str) -> Result<(), Refusal> {
        let channel = parse_channel(&id, name)?;
        if !self.subscriptions.contains(&channel) {
            let why = "not subscribed to this channel";
            return Err(Refusal::new(id, ErrorCode::NotSubscribed, why));
        }
        self.gw.registry().unsubscribe(self.conn.id, &channel);
        self.subscriptions.retain(|c| *c != channel);
        self.reply(protocol::unsubscribed(&id, name));
        Ok(())
    }

    async fn subscribe(
        &mut self,
        id: RequestId,
        name: &str,
        since: Option<&str>,
    ) -> Result<(), Refusal> {
        if let Err(wait) = self.subscribes.take() {
            let why = format!(
                "too many subscribes; retry in {} ms",
                wait.as_millis().max(1)
            );
            return Err(Refusal::new(id, ErrorCode::RateLimited, why));
        }
        let channel = parse_channel(&id, name)?;
        match authz::decide(&self.claims, &channel) {
            Decision::Allow => {}
            Decision::Deny(why) => return Err(Refusal::new(id, ErrorCode::Forbidden, why)),
            Decision::NeedsCapability(cap) => {
                let granted = authz::has_capability(
                    self.gw.pool(),
                    self.claims.tenant_id,
                    self.claims.sub,
                    cap,
                )
                .await;
                match granted {
                    Ok(true) => {}
                    Ok(false) => {
                        let why = format!("needs role owner or admin, or capability {cap}");
                        return Err(Refusal::new(id, ErrorCode::Forbidden, why));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "capability check failed");
                        return Err(Refusal::new(id, ErrorCode::Internal, "try again"));
                    }
                }
            }
        }
        let already = self.subscriptions.contains(&channel);
        if !already && self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            let why = format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection");
            return Err(Refusal::new(id, ErrorCode::BadRequest, why));
        }
        if !already {
            self.subscriptions.push(channel);
        }
        let registry = self.gw.registry();
        let Subscription::NeedsSnapshot(resume) =
            registry.subscribe(&self.conn, channel, name, &id, since)
        else {
            return Ok(());
        };
        let snapshot = tokio::time::timeout(SNAPSHOT_TIMEOUT, self.gw.snapshots().read(channel));
        let replay = async {
            match (&resume.replay, self.gw.log_replay()) {
                (Some(plan), Some(log)) => Some(log.replay(channel, name, plan).await),
                _ => None,
            }
        };
        let (snapshot, replayed) = tokio::join!(snapshot, replay);
        match snapshot {
            Ok(Ok(snap)) => {
                registry.complete(&self.conn, &channel, &*snap, &resume, replayed);
                Ok(())
            }
            failed => {
                match failed {
                    Ok(Err(e)) => tracing::warn!(error = %e, %name, "no snapshot"),
                    _ => tracing::warn!(%name, "snapshot query timed out"),
                }
                registry.unsubscribe(self.conn.id, &channel);
                self.subscriptions.retain(|c| *c != channel);
                Err(Refusal::new(
                    id,
                    ErrorCode::Internal,
                    "snapshot unavailable; try again",
                ))
            }
        }
    }
}

fn parse_channel(id: &RequestId, name: &str) -> Result<Channel, Refusal> {
    name.parse()
        .map_err(|e: lad_consumers::live::UnknownChannel| {
            Refusal::new(id.clone(), ErrorCode::UnknownChannel, e.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_expiry_maps_to_an_instant() {
        let now = Instant::now();
        assert!(expiry_instant(i64::MAX) > now + Duration::from_secs(3600 * 24 * 365));
        assert!(expiry_instant(i64::MIN) <= Instant::now());
        let soon = expiry_instant(unix_now() + 10);
        assert!(
            soon > now + Duration::from_secs(8) && soon <= Instant::now() + Duration::from_secs(10)
        );
    }
}
