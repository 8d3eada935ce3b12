//! Caps that keep one client, user or tenant from exhausting a node:
//! open connections per node, per tenant and per user (checked before the
//! upgrade, so a refused client costs no socket task), and a token bucket
//! on subscribes (each may run a snapshot query). The bucket is the user's,
//! shared by all of its sockets on the node: a bucket per socket would give
//! a user who opens its maximum of sockets that many bursts, and one more
//! with every reconnect. A socket that keeps sending past `rate_limited`
//! is closed (1008) once it exceeds a frame budget of its own, so ignoring
//! the refusals cannot turn them into the flood.
//!
//! Snapshot reads themselves run on their own small pool with a statement
//! timeout (`startup.rs`), so however many subscribes get through, the
//! pipelines' connections are never theirs.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dashmap::DashMap;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Seconds a refused client is told to wait before it tries again.
const RETRY_AFTER_SECS: &str = "5";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitConfig {
    pub max_connections: usize,
    pub max_connections_per_tenant: usize,
    pub max_connections_per_user: usize,
    /// Subscribes per second a user's sockets may sustain together.
    pub subscribe_rate: f64,
    /// Subscribes a user's sockets may send at once.
    pub subscribe_burst: u32,
    /// Frames per second a socket may sustain; beyond its burst it is closed
    /// with 1008. Far above any client that honours `rate_limited`.
    pub frame_rate: f64,
    pub frame_burst: u32,
}

impl Default for LimitConfig {
    /// The `serve` defaults: far above what a large tenant's dashboards use.
    fn default() -> LimitConfig {
        LimitConfig {
            max_connections: 100_000,
            max_connections_per_tenant: 20_000,
            max_connections_per_user: 64,
            subscribe_rate: 5.0,
            subscribe_burst: 100,
            frame_rate: 20.0,
            frame_burst: 200,
        }
    }
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("this node has {0} open connections, its maximum")]
    Node(usize),
    #[error("this tenant has {0} open connections on this node, its maximum")]
    Tenant(usize),
    #[error("this user has {0} open connections on this node, its maximum")]
    User(usize),
}

impl LimitExceeded {
    pub fn limit(self) -> &'static str {
        match self {
            LimitExceeded::Node(_) => "node",
            LimitExceeded::Tenant(_) => "tenant",
            LimitExceeded::User(_) => "user",
        }
    }

    /// 503 for the node (another node may have room: a load balancer
    /// retries elsewhere); 429 for a tenant or user (their own doing).
    pub fn status(self) -> StatusCode {
        match self {
            LimitExceeded::Node(_) => StatusCode::SERVICE_UNAVAILABLE,
            LimitExceeded::Tenant(_) | LimitExceeded::User(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl IntoResponse for LimitExceeded {
    fn into_response(self) -> Response {
        metrics::counter!("lad_ws_refused_total", "reason" => self.limit()).increment(1);
        let max = match self {
            LimitExceeded::Node(n) | LimitExceeded::Tenant(n) | LimitExceeded::User(n) => n,
        };
        let body = Json(json!({
            "error": "too_many_connections",
            "limit": self.limit(),
            "max": max,
            "message": self.to_string(),
        }));
        (
            self.status(),
            [(header::RETRY_AFTER, RETRY_AFTER_SECS)],
            body,
        )
            .into_response()
    }
}

/// Open connections by node, tenant and user.
#[derive(Clone)]
pub struct ConnectionLimiter {
    inner: Arc<Counts>,
}

struct Counts {
    cfg: LimitConfig,
    node: AtomicUsize,
    tenants: DashMap<Uuid, usize>,
    users: DashMap<(Uuid, Uuid), UserState>,
}

/// A user's open connections and the subscribe bucket they share.
struct UserState {
    open: usize,
    subscribes: SubscribeLimiter,
}

/// The subscribe bucket of one user on this node, shared by its sockets.
#[derive(Clone)]
pub struct SubscribeLimiter(Arc<std::sync::Mutex<TokenBucket>>);

impl SubscribeLimiter {
    pub fn new(cfg: &LimitConfig) -> SubscribeLimiter {
        SubscribeLimiter(Arc::new(std::sync::Mutex::new(
            TokenBucket::for_subscribes(cfg),
        )))
    }

    /// Takes a subscribe; else how long until one is allowed.
    pub fn take(&self) -> Result<(), Duration> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(Instant::now())
    }
}

/// One admitted connection; dropping it gives its places back.
pub struct ConnectionPermit {
    counts: Arc<Counts>,
    tenant: Uuid,
    user: (Uuid, Uuid),
}

impl ConnectionLimiter {
    pub fn new(cfg: LimitConfig) -> ConnectionLimiter {
        ConnectionLimiter {
            inner: Arc::new(Counts {
                cfg,
                node: AtomicUsize::new(0),
                tenants: DashMap::new(),
                users: DashMap::new(),
            }),
        }
    }

    /// Takes a place for a connection of `user` in `tenant`, or says which
    /// cap is full. Each count is taken and checked in one step, so racing
    /// upgrades cannot overshoot a cap.
    pub fn admit(&self, tenant: Uuid, user: Uuid) -> Result<ConnectionPermit, LimitExceeded> {
        let c = &self.inner;
        let max = c.cfg.max_connections;
        if c.node
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(LimitExceeded::Node(max));
        }
        let release_node = || c.node.fetch_sub(1, Ordering::AcqRel);
        {
            let mut n = c.tenants.entry(tenant).or_insert(0);
            if *n >= c.cfg.max_connections_per_tenant {
                drop(n);
                release(&c.tenants, &tenant, false);
                release_node();
                return Err(LimitExceeded::Tenant(c.cfg.max_connections_per_tenant));
            }
            *n += 1;
        }
        let key = (tenant, user);
        {
            let mut u = c.users.entry(key).or_insert_with(|| UserState {
                open: 0,
                subscribes: SubscribeLimiter::new(&c.cfg),
            });
            if u.open >= c.cfg.max_connections_per_user {
                drop(u);
                c.users.remove_if(&key, |_, u| u.open == 0);
                release(&c.tenants, &tenant, true);
                release_node();
                return Err(LimitExceeded::User(c.cfg.max_connections_per_user));
            }
            u.open += 1;
        }
        Ok(ConnectionPermit {
            counts: c.clone(),
            tenant,
            user: key,
        })
    }

    /// The subscribe bucket of `user`, shared by its sockets; a fresh one if
    /// the user holds no permit (a session started without the upgrade).
    pub fn subscribes(&self, tenant: Uuid, user: Uuid) -> SubscribeLimiter {
        self.inner
            .users
            .get(&(tenant, user))
            .map(|u| u.subscribes.clone())
            .unwrap_or_else(|| SubscribeLimiter::new(&self.inner.cfg))
    }

    pub fn open(&self) -> usize {
        self.inner.node.load(Ordering::Acquire)
    }

    /// Tenants and users with a count (for leak checks).
    pub fn tracked(&self) -> (usize, usize) {
        (self.inner.tenants.len(), self.inner.users.len())
    }
}

/// Takes one from `key`'s count (if `taken`) and removes the entry at zero,
/// so the maps only hold keys with open connections.
fn release<K: std::hash::Hash + Eq + Copy>(map: &DashMap<K, usize>, key: &K, taken: bool) {
    map.remove_if_mut(key, |_, n| {
        if taken {
            *n -= 1;
        }
        *n == 0
    });
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.counts.users.remove_if_mut(&self.user, |_, u| {
            u.open -= 1;
            u.open == 0
        });
        release(&self.counts.tenants, &self.tenant, true);
        self.counts.node.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    pub fn for_subscribes(cfg: &LimitConfig) -> TokenBucket {
        TokenBucket::new(cfg.subscribe_rate, cfg.subscribe_burst)
    }

    pub fn for_frames(cfg: &LimitConfig) -> TokenBucket {
        TokenBucket::new(cfg.frame_rate, cfg.frame_burst)
    }

    /// Takes a token if one is left; else how long until one is.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.rate > 0.0 {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        } else {
            Err(Duration::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(node: usize, tenant: usize, user: usize) -> ConnectionLimiter {
        ConnectionLimiter::new(LimitConfig {
            max_connections: node,
            max_connections_per_tenant: tenant,
            max_connections_per_user: user,
            ..LimitConfig::default()
        })
    }

    #[test]
    fn each_cap_refuses_with_its_own_reason_and_others_are_unaffected() {
        let l = limiter(5, 3, 2);
        let (t1, t2, u1, u2, u3) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let a = l.admit(t1, u1).unwrap();
        let _b = l.admit(t1, u1).unwrap();
        assert_eq!(l.admit(t1, u1).err(), Some(LimitExceeded::User(2)));
        let _c = l.admit(t1, u2).unwrap();
        assert_eq!(l.admit(t1, u3).err(), Some(LimitExceeded::Tenant(3)));
        let _d = l.admit(t2, u3).unwrap();
        let _e = l.admit(t2, u2).unwrap();
        assert_eq!(l.admit(t2, u1).err(), Some(LimitExceeded::Node(5)));
        assert_eq!(l.open(), 5);
        drop(a);
        let _f = l.admit(t1, u1).unwrap();
    }

    #[test]
    fn refusals_and_closed_connections_leave_no_counts_behind() {
        let l = limiter(10, 10, 1);
        let (t, u) = (Uuid::new_v4(), Uuid::new_v4());
        let p = l.admit(t, u).unwrap();
        assert!(l.admit(t, u).is_err());
        assert_eq!(l.tracked(), (1, 1));
        drop(p);
        assert_eq!((l.open(), l.tracked()), (0, (0, 0)));
        let l = limiter(10, 0, 10);
        assert_eq!(l.admit(t, u).err(), Some(LimitExceeded::Tenant(0)));
        assert_eq!((l.open(), l.tracked()), (0, (0, 0)));
    }

    #[test]
    fn statuses_are_503_for_the_node_and_429_for_tenant_and_user() {
        assert_eq!(
            LimitExceeded::Node(1).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            LimitExceeded::Tenant(1).status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            LimitExceeded::User(1).status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn a_users_sockets_share_one_subscribe_bucket_and_other_users_have_their_own() {
        let l = ConnectionLimiter::new(LimitConfig {
            subscribe_rate: 0.0,
            subscribe_burst: 2,
            ..LimitConfig::default()
        });
        let (t, u, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (_p1, _p2, _p3) = (
            l.admit(t, u).unwrap(),
            l.admit(t, u).unwrap(),
            l.admit(t, other).unwrap(),
        );
        let (a, b) = (l.subscribes(t, u), l.subscribes(t, u));
        assert!(a.take().is_ok() && b.take().is_ok());
        assert!(a.take().is_err() && b.take().is_err());
        assert!(l.subscribes(t, other).take().is_ok());
    }

    #[test]
    fn the_bucket_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2.0, 3);
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
        assert!(b.take(t0 + Duration::from_millis(500)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(500)).is_err());
        // Idle time refills up to the burst, never beyond.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.take(later).is_ok());
        }
        assert!(b.take(later).is_err());
    }
}
