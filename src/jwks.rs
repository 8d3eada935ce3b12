//! The identity provider's signing keys: a JWKS read from a URL or a file,
//! kept in memory, refreshed on a schedule and when a token names a `kid`
//! the cache does not know (how a rotation reaches the hub before the
//! schedule does). Fetches caused by unknown `kid`s are spaced by a minimum
//! interval, so a flood of forged `kid`s costs the identity provider one
//! request per interval at most.
//!
//! Only asymmetric keys are taken (RSA for RS256, P-256 for ES256): an `oct`
//! key in a published set would let anyone who reads the set sign tokens.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the key set comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("fetching the JWKS from {url}: {source}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("reading the JWKS file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the JWKS is not a JSON object with a \"keys\" list: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("the JWKS has no usable RS256 or ES256 signing key")]
    NoUsableKey,
}

/// A verification key and the one algorithm it may be used with.
#[derive(Clone)]
pub struct SigningKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    /// Scheduled refresh: keys removed from the set stop working within this.
    pub max_age: Duration,
    /// Least time between two fetches caused by an unknown `kid`.
    pub min_interval: Duration,
}

struct Cached {
    by_kid: HashMap<String, SigningKey>,
    /// Keys published without a `kid`, usable only by tokens without one.
    unnamed: Vec<SigningKey>,
    fetched_at: Instant,
}

/// A cached key set, shared by every connection of the node.
#[derive(Clone)]
pub struct Jwks {
    inner: Arc<JwksInner>,
}

struct JwksInner {
    source: JwksSource,
    client: reqwest::Client,
    policy: RefreshPolicy,
    keys: RwLock<Cached>,
    /// Held while fetching, so concurrent misses wait for one fetch.
    fetching: Mutex<Option<Instant>>,
}

impl Jwks {
    /// Loads the set once: a hub that cannot read its identity provider's
    /// keys at start is misconfigured and says so instead of refusing every
    /// token later.
    pub async fn load(source: JwksSource, policy: RefreshPolicy) -> Result<Jwks, JwksError> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|source| JwksError::Fetch {
                url: String::new(),
                source,
            })?;
        let cached = fetch(&client, &source).await?;
        if cached.by_kid.is_empty() && cached.unnamed.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Jwks {
            inner: Arc::new(JwksInner {
                source,
                client,
                policy,
                keys: RwLock::new(cached),
                fetching: Mutex::new(Some(Instant::now())),
            }),
        })
    }

    /// The key a token's header names. A stale set is refreshed in the
    /// background (the known keys answer meanwhile, so an identity provider
    /// that is slow or down delays no one); a `kid` the set does not know
    /// is fetched for at once. Either way at most one fetch per minimum
    /// interval. `None`: no such key (rotated out or forged).
    pub async fn key(&self, kid: Option<&str>) -> Option<SigningKey> {
        let (found, stale) = {
            let cached = self.inner.keys.read().await;
            (
                lookup(&cached, kid),
                cached.fetched_at.elapsed() >= self.inner.policy.max_age,
            )
        };
        if let Some(key) = found {
            if stale {
                let this = self.clone();
                tokio::spawn(async move { this.refresh().await });
            }
            return Some(key);
        }
        self.refresh().await;
        lookup(&*self.inner.keys.read().await, kid)
    }

    /// Fetches the set unless a fetch started less than the minimum
    /// interval ago. A failed fetch keeps the keys already known: an
    /// identity provider that is down must not log everybody out.
    async fn refresh(&self) {
        let mut last = self.inner.fetching.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.inner.policy.min_interval) {
            return;
        }
        *last = Some(Instant::now());
        match fetch(&self.inner.client, &self.inner.source).await {
            Ok(fresh) => {
                metrics::counter!("lad_jwks_refreshes_total", "outcome" => "ok").increment(1);
                *self.inner.keys.write().await = fresh;
            }
            Err(e) => {
                metrics::counter!("lad_jwks_refreshes_total", "outcome" => "error").increment(1);
                tracing::warn!(error = %e, "JWKS refresh failed; keeping the known keys");
            }
        }
    }

    /// Key ids currently known (for logs and tests).
    pub async fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self
            .inner
            .keys
            .read()
            .await
            .by_kid
            .keys()
            .cloned()
            .collect();
        kids.sort();
        kids
    }
}

fn lookup(cached: &Cached, kid: Option<&str>) -> Option<SigningKey> {
    match kid {
        Some(kid) => cached.by_kid.get(kid).cloned(),
        // Without a kid a token can only be matched when the choice is unique.
        None if cached.unnamed.len() == 1 && cached.by_kid.is_empty() => {
            cached.unnamed.first().cloned()
        }
        None => None,
    }
}

async fn fetch(client: &reqwest::Client, source: &JwksSource) -> Result<Cached, JwksError> {
    let body = match source {
        JwksSource::Url(url) => {
            let fetched = async {
                client
                    .get(url)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await
            };
            fetched.await.map_err(|source| JwksError::Fetch {
                url: crate::secrets::redact_url(url),
                source,
            })?
        }
        JwksSource::File(path) => tokio::fs::read(path)
            .await
            .map_err(|source| JwksError::Read {
                path: path.clone(),
                source,
            })?
            .into(),
    };
    Ok(parse(&body)?)
}

/// Parses a JWKS, keeping each usable signing key and skipping (with a
/// warning) the others: one key of a type this hub does not use must not
/// make the whole set unreadable.
fn parse(body: &[u8]) -> Result<Cached, serde_json::Error> {
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet = serde_json::from_slice(body)?;
    let mut cached = Cached {
        by_kid: HashMap::new(),
        unnamed: Vec::new(),
        fetched_at: Instant::now(),
    };
    for value in raw.keys {
        let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        let key = serde_json::from_value::<Jwk>(value)
            .map_err(|e| e.to_string())
            .and_then(|jwk| signing_key(&jwk));
        match (key, kid) {
            (Ok(key), Some(kid)) => {
                cached.by_kid.insert(kid, key);
            }
            (Ok(key), None) => cached.unnamed.push(key),
            (Err(why), kid) => tracing::warn!(?kid, %why, "JWKS key skipped"),
        }
    }
    Ok(cached)
}

/// The algorithm a published key verifies, if it is one this hub accepts.
fn signing_key(jwk: &Jwk) -> Result<SigningKey, String> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err("not a signing key (\"use\" is not \"sig\")".into());
    }
    let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        (_, alg) => return Err(format!("key type or algorithm {alg:?} not accepted")),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    Ok(SigningKey { algorithm, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test key's public half (tests/fixtures/jwt), with `kid` and
    /// the other members replaced as given.
    fn rsa(kid: Option<&str>, extra: serde_json::Value) -> serde_json::Value {
        let mut key: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/jwt/rsa-a.jwk.json")).unwrap();
        let obj = key.as_object_mut().unwrap();
        obj.remove("alg");
        obj.remove("use");
        match kid {
            Some(kid) => obj.insert("kid".into(), kid.into()),
            None => obj.remove("kid"),
        };
        if let serde_json::Value::Object(m) = extra {
            obj.extend(m);
        }
        key
    }

    fn parse_keys(keys: Vec<serde_json::Value>) -> Cached {
        parse(serde_json::json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn symmetric_encryption_and_unknown_keys_are_skipped_not_fatal() {
        let cached = parse_keys(vec![
            rsa(
                Some("good"),
                serde_json::json!({"alg": "RS256", "use": "sig"}),
            ),
            serde_json::json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
            rsa(Some("enc"), serde_json::json!({"use": "enc"})),
            rsa(Some("ps"), serde_json::json!({"alg": "PS256"})),
            serde_json::json!({"kty": "OKP", "kid": "weird", "crv": "X448", "x": "AA"}),
        ]);
        let kids: Vec<&String> = cached.by_kid.keys().collect();
        assert_eq!(kids, ["good"]);
        assert_eq!(cached.by_kid["good"].algorithm, Algorithm::RS256);
    }

    #[test]
    fn a_token_without_kid_matches_only_a_lone_unnamed_key() {
        let cached = parse_keys(vec![rsa(None, serde_json::json!({}))]);
        assert!(lookup(&cached, None).is_some());
        assert!(lookup(&cached, Some("x")).is_none());
        let two = parse_keys(vec![
            rsa(None, serde_json::json!({})),
            rsa(Some("a"), serde_json::json!({})),
        ]);
        assert!(lookup(&two, None).is_none());
        assert!(lookup(&two, Some("a")).is_some());
    }

    #[test]
    fn a_document_without_keys_is_an_error() {
        assert!(parse(b"{}").is_err());
        assert!(parse(b"not json").is_err());
    }

    fn write_set(path: &std::path::Path, kids: &[&str]) {
        let keys: Vec<serde_json::Value> = kids
            .iter()
            .map(|k| rsa(Some(k), serde_json::json!({})))
            .collect();
        std::fs::write(path, serde_json::json!({ "keys": keys }).to_string()).unwrap();
    }

    #[tokio::test]
    async fn an_unknown_kid_refreshes_at_most_once_per_interval_and_a_failed_refresh_keeps_the_keys(
    ) {
        let dir = std::env::temp_dir().join(format!("lad-jwks-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        write_set(&path, &["a"]);
        let policy = RefreshPolicy {
            max_age: Duration::from_secs(3600),
            min_interval: Duration::from_millis(300),
        };
        let jwks = Jwks::load(JwksSource::File(path.clone()), policy)
            .await
            .unwrap();
        assert!(jwks.key(Some("a")).await.is_some());

        // Rotated in, but asked for within the interval of the load: not yet.
        write_set(&path, &["b"]);
        assert!(jwks.key(Some("b")).await.is_none());
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(jwks.key(Some("b")).await.is_some());
        assert!(jwks.key(Some("a")).await.is_none(), "rotated out");

        // The source goes away: the known keys stay.
        std::fs::remove_file(&path).unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(jwks.key(Some("x")).await.is_none());
        assert!(jwks.key(Some("b")).await.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_stale_set_still_answers_and_is_refreshed_behind_it() {
        let dir = std::env::temp_dir().join(format!("lad-jwks-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        write_set(&path, &["a"]);
        let policy = RefreshPolicy {
            max_age: Duration::from_millis(100),
            min_interval: Duration::ZERO,
        };
        let jwks = Jwks::load(JwksSource::File(path.clone()), policy)
            .await
            .unwrap();
        write_set(&path, &["b"]);
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Stale: "a" still answers at once, and the refresh it starts drops it.
        assert!(jwks.key(Some("a")).await.is_some());
        let mut dropped = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if jwks.kids().await == ["b"] {
                dropped = true;
                break;
            }
        }
        assert!(dropped, "the background refresh did not land");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
