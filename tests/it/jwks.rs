//! Tokens of an identity provider: RS256 and ES256 verified against a JWKS
//! the test serves itself (keys in tests/fixtures/jwt, test-only), key
//! rotation, `iss`/`aud` and the lifetime cap, through a hub process.

use crate::support::*;
use axum::routing::get;
use axum::Router;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_tungstenite::tungstenite;
use uuid::Uuid;

const ISSUER: &str = "https://id.lad.test/";
const AUDIENCE: &str = "lad-live-hub";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn jwk(name: &str) -> Value {
    serde_json::from_str(&fixture(&format!("{name}.jwk.json"))).expect("JWK")
}

/// A JWKS served on port 0 whose keys the test can change, and how many
/// times it was fetched.
struct IdentityProvider {
    url: String,
    keys: Arc<RwLock<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl IdentityProvider {
    async fn start(keys: Vec<Value>) -> IdentityProvider {
        let keys = Arc::new(RwLock::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (k, f) = (keys.clone(), fetches.clone());
        let app = Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let (k, f) = (k.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({ "keys": *k.read().unwrap() }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        IdentityProvider {
            url: format!("http://{addr}/.well-known/jwks.json"),
            keys,
            fetches,
        }
    }

    fn publish(&self, names: &[&str]) {
        *self.keys.write().unwrap() = names.iter().map(|n| jwk(n)).collect();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A token of the identity provider: `key` signs, `kid` names the key.
fn idp_token(key: &str, kid: &str, claims: &Value) -> String {
    let pem = fixture(&format!("{key}.pem"));
    let (alg, enc) = if key.starts_with("rsa") {
        (Algorithm::RS256, EncodingKey::from_rsa_pem(pem.as_bytes()))
    } else {
        (Algorithm::ES256, EncodingKey::from_ec_pem(pem.as_bytes()))
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &enc.expect("test key")).expect("signed")
}

fn claims(tenant: Uuid, user: Uuid) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": user, "tenant_id": tenant, "role": "member", "iat": now, "exp": now + 600,
           "iss": ISSUER, "aud": AUDIENCE})
}

/// The HTTP status of the upgrade: 101 when the socket opened.
async fn upgrade_status(hub: &Hub, token: &str) -> u16 {
    match tokio_tungstenite::connect_async(hub.ws_url(token)).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed without a status: {e}"),
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn identity_provider_tokens_are_verified_against_its_jwks_and_a_rotated_out_key_is_refused(
    pool: PgPool,
) {
    let idp = IdentityProvider::start(Vec::new()).await;
    idp.publish(&["rsa-a", "ec-a"]);
    let topics = Topics::new();
    let hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            extra_env: vec![
                ("LAD_JWKS_URL".into(), idp.url.clone()),
                ("LAD_JWKS_MIN_REFRESH_SECS".into(), "2".into()),
                ("LAD_JWT_ISSUER".into(), ISSUER.into()),
                ("LAD_JWT_AUDIENCE".into(), format!("other-app,{AUDIENCE}")),
                ("LAD_JWT_MAX_LIFETIME_SECS".into(), "3600".into()),
            ],
            ..HubOptions::default()
        },
    )
    .await;
    let (tenant, user) = (Uuid::new_v4(), Uuid::new_v4());
    let good = claims(tenant, user);

    // RS256 and ES256 keys of the set; the token's claims are the contract's.
    let mut client = Client::connect(&hub.ws_url(&idp_token("rsa-a", "rsa-a", &good))).await;
    let channel = format!("tenant:{tenant}:user:{user}:ai");
    assert_eq!(client.subscribe(&channel).await["op"], "subscribed");
    assert_eq!(
        upgrade_status(&hub, &idp_token("ec-a", "ec-a", &good)).await,
        101
    );
    // HS256 development tokens still work next to them.
    assert_eq!(
        upgrade_status(&hub, &token(tenant, user, "member", &[])).await,
        101
    );

    // Refusals before the upgrade.
    let with = |patch: Value| {
        let mut c = good.clone();
        c.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        c
    };
    let now = chrono::Utc::now().timestamp();
    for (why, token) in [
        (
            "wrong issuer",
            idp_token("rsa-a", "rsa-a", &with(json!({"iss": "https://evil/"}))),
        ),
        (
            "wrong audience",
            idp_token("rsa-a", "rsa-a", &with(json!({"aud": "someone-else"}))),
        ),
        ("no audience", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("aud");
            idp_token("rsa-a", "rsa-a", &c)
        }),
        (
            "lifetime over the cap",
            idp_token("rsa-a", "rsa-a", &with(json!({"exp": now + 7200}))),
        ),
        (
            "expired",
            idp_token("ec-a", "ec-a", &with(json!({"exp": now - 5}))),
        ),
        (
            "signed by another key under a known kid",
            idp_token("rsa-b", "rsa-a", &good),
        ),
        (
            "an RSA kid on an ES256 token",
            idp_token("ec-a", "rsa-a", &good),
        ),
    ] {
        assert_eq!(upgrade_status(&hub, &token).await, 401, "{why}");
    }

    // Rotation: rsa-a out, rsa-b in. The first rsa-b token makes the hub
    // refresh (its kid is unknown); from then on rsa-a is refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    idp.publish(&["rsa-b", "ec-a"]);
    let before = idp.fetches();
    assert_eq!(
        upgrade_status(&hub, &idp_token("rsa-b", "rsa-b", &good)).await,
        101
    );
    assert_eq!(idp.fetches(), before + 1, "one refresh for the new kid");
    assert_eq!(
        upgrade_status(&hub, &idp_token("rsa-a", "rsa-a", &good)).await,
        401
    );

    // A flood of unknown kids costs the identity provider at most one
    // fetch per minimum interval (2 s here).
    let before = idp.fetches();
    for i in 0..30 {
        let t = idp_token("rsa-b", &format!("forged-{i}"), &good);
        assert_eq!(upgrade_status(&hub, &t).await, 401);
    }
    assert!(
        idp.fetches() - before <= 1,
        "{} fetches",
        idp.fetches() - before
    );

    // The socket opened with the rotated-out key is not affected by the
    // rotation: it was verified when it opened, and its exp still holds.
    assert_eq!(client.subscribe(&channel).await["op"], "subscribed");
}

#[sqlx::test(migrations = "./migrations")]
async fn a_jwks_file_is_accepted_and_an_unreadable_one_refuses_the_start(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("lad-jwks-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwks.json");
    std::fs::write(&file, json!({"keys": [jwk("ec-a")]}).to_string()).unwrap();

    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_lad-hub"))
        .arg("serve")
        .env_remove("LAD_JWT_SECRET")
        .env("LAD_JWKS_FILE", dir.join("missing.json"))
        .output()
        .expect("lad-hub runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to start") && stderr.contains("missing.json"),
        "{stderr}"
    );

    let topics = Topics::new();
    let hub = Hub::start(
        &pool,
        &topics,
        HubOptions {
            extra_env: vec![("LAD_JWKS_FILE".into(), file.display().to_string())],
            ..HubOptions::default()
        },
    )
    .await;
    let (tenant, user) = (Uuid::new_v4(), Uuid::new_v4());
    let mut c = claims(tenant, user);
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        upgrade_status(&hub, &idp_token("ec-a", "ec-a", &c)).await,
        101
    );
    assert_eq!(
        upgrade_status(&hub, &idp_token("rsa-a", "rsa-a", &c)).await,
        401
    );
    let _ = std::fs::remove_dir_all(&dir);
}
