//! JWT verification for the WebSocket (contract §7) and token minting for
//! the `token` subcommand and tests.
//!
//! Two kinds of tokens are accepted: HS256 with the hub's own secret
//! (development, service tokens) and RS256/ES256 signed by the identity
//! provider whose keys are published as a JWKS ([`crate::jwks`]). The
//! algorithm is chosen by what the hub is configured with, never trusted
//! from the token alone: an HS256 token is only checked against the secret,
//! an RS256/ES256 token only against a JWKS key published for that very
//! algorithm. Accepting the header's algorithm as is is how "alg: none" and
//! key-confusion forgeries get in.

use crate::jwks::Jwks;
use axum::http::{header, HeaderMap, Uri};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The capability that lets a member or viewer see the billing channel.
pub const BILLING_VIEW: &str = "billing.view";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        })
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!(
                "unknown role {other:?} (owner, admin, member, viewer)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub tenant_id: Uuid,
    pub role: Role,
    /// Seconds since the Unix epoch.
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
}

impl Claims {
    pub fn has_cap(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }
}

/// Why a token was refused. The message is safe to show to the client: it
/// names the class of failure, never the secret, the keys or the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("invalid token signature")]
    Forged,
    #[error("token algorithm not accepted")]
    WrongAlgorithm,
    #[error("token signed with an unknown key")]
    UnknownKey,
    #[error("token expired")]
    Expired,
    #[error("token issuer not accepted")]
    WrongIssuer,
    #[error("token audience not accepted")]
    WrongAudience,
    #[error("token lifetime exceeds the maximum")]
    LifetimeTooLong,
}

/// What a token must satisfy besides its signature.
#[derive(Clone, Default)]
pub struct TokenPolicy {
    /// HS256 secret; `None`: HS256 tokens are refused.
    pub hs256_secret: Option<String>,
    /// The identity provider's keys; `None`: RS256/ES256 tokens are refused.
    pub jwks: Option<Jwks>,
    /// Required `iss` of identity-provider tokens.
    pub issuer: Option<String>,
    /// Accepted `aud` values of identity-provider tokens (any one); empty: not checked.
    pub audience: Vec<String>,
    /// Longest lifetime of any token: `exp - iat` and `exp - now` may not exceed it.
    pub max_lifetime: Option<Duration>,
}

#[derive(Clone)]
pub struct Verifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    hs256: Option<DecodingKey>,
    jwks: Option<Jwks>,
    issuer: Option<String>,
    audience: Vec<String>,
    max_lifetime: Option<Duration>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier { .. }")
    }
}

/// The claims the lifetime rule reads; `iat` is optional in the contract.
#[derive(Deserialize)]
struct Issued {
    iat: Option<i64>,
}

impl Verifier {
    /// HS256 tokens signed with `secret`, and nothing else.
    pub fn new(secret: &str) -> Verifier {
        Verifier::with_policy(TokenPolicy {
            hs256_secret: Some(secret.to_owned()),
            ..TokenPolicy::default()
        })
    }

    pub fn with_policy(policy: TokenPolicy) -> Verifier {
        Verifier {
            inner: Arc::new(VerifierInner {
                hs256: policy
                    .hs256_secret
                    .map(|s| DecodingKey::from_secret(s.as_bytes())),
                jwks: policy.jwks,
                issuer: policy.issuer,
                audience: policy.audience,
                max_lifetime: policy.max_lifetime,
            }),
        }
    }

    /// `iss` and `aud` are the identity provider's: they are checked on its
    /// tokens, not on HS256 ones, which the hub's own secret signs.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = 0;
        validation.validate_exp = true;
        let from_idp = alg != Algorithm::HS256;
        let issuer = self.inner.issuer.as_ref().filter(|_| from_idp);
        let audience: &[String] = if from_idp { &self.inner.audience } else { &[] };
        // jsonwebtoken checks `iss` and `aud` only when present: a token
        // without them must not slip past a configured check.
        let mut required = vec!["exp"];
        if issuer.is_some() {
            required.push("iss");
        }
        if !audience.is_empty() {
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        match issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        if audience.is_empty() {
            // The contract's tokens carry no audience; a stray `aud` must not
            // turn a valid token into a refusal.
            validation.validate_aud = false;
        } else {
            validation.set_audience(audience);
        }
        validation
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::InvalidAlgorithmName => AuthError::WrongAlgorithm,
            _ => AuthError::Malformed,
        })?;
        let (alg, key) = match (header.alg, &self.inner.hs256, &self.inner.jwks) {
            (Algorithm::HS256, Some(secret), _) => (Algorithm::HS256, secret.clone()),
            (alg @ (Algorithm::RS256 | Algorithm::ES256), _, Some(jwks)) => {
                let key = jwks
                    .key(header.kid.as_deref())
                    .await
                    .ok_or(AuthError::UnknownKey)?;
                // A key is published for one algorithm; a token naming
                // another with the same kid is refused, not re-interpreted.
                if key.algorithm != alg {
                    return Err(AuthError::WrongAlgorithm);
                }
                (alg, key.key)
            }
            _ => return Err(AuthError::WrongAlgorithm),
        };
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &self.validation(alg))
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::Forged,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::WrongAlgorithm
                }
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::MissingRequiredClaim(c) if c == "iss" => AuthError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(c) if c == "aud" => AuthError::WrongAudience,
                _ => AuthError::Malformed,
            })?;
        let issued: Issued =
            serde_json::from_value(data.claims.clone()).map_err(|_| AuthError::Malformed)?;
        let claims: Claims =
            serde_json::from_value(data.claims).map_err(|_| AuthError::Malformed)?;
        let now = unix_now();
        // jsonwebtoken accepts `exp == now`; a token in its last second would
        // open a socket only to close it with 4001 at once.
        if claims.exp <= now {
            return Err(AuthError::Expired);
        }
        if let Some(max) = self.inner.max_lifetime {
            let max = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
            let from = issued.iat.map_or(now, |iat| iat.min(now));
            if claims.exp.saturating_sub(from) > max {
                return Err(AuthError::LifetimeTooLong);
            }
        }
        Ok(claims)
    }
}

/// Signs `claims` with HS256.
pub fn mint(secret: &str, claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing of serializable claims cannot fail")
}

/// The token of a WebSocket request: `?token=` first, then
/// `Authorization: Bearer` (browsers cannot set headers on a WebSocket).
pub fn token_from_request(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    #[derive(Deserialize)]
    struct TokenQuery {
        token: Option<String>,
    }
    let from_query = axum::extract::Query::<TokenQuery>::try_from_uri(uri)
        .ok()
        .and_then(|q| q.0.token)
        .filter(|t| !t.is_empty());
    from_query.or_else(|| {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
    })
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const SECRET: &str = "test-secret";

    fn claims(exp: i64) -> Claims {
        Claims {
            sub: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            role: Role::Member,
            exp,
            caps: vec![BILLING_VIEW.into()],
        }
    }

    fn sign_with(alg: Algorithm, secret: &str, c: &Claims) -> String {
        jsonwebtoken::encode(
            &Header::new(alg),
            c,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_minted_token_verifies_to_the_same_claims() {
        let c = claims(unix_now() + 60);
        assert_eq!(Verifier::new(SECRET).verify(&mint(SECRET, &c)).await, Ok(c));
    }

    #[tokio::test]
    async fn caps_default_to_empty() {
        let c = Claims {
            caps: Vec::new(),
            ..claims(unix_now() + 60)
        };
        let got = Verifier::new(SECRET)
            .verify(&mint(SECRET, &c))
            .await
            .unwrap();
        assert!(got.caps.is_empty());
    }

    #[tokio::test]
    async fn a_token_signed_with_another_secret_is_forged() {
        let token = mint("other-secret", &claims(unix_now() + 60));
        assert_eq!(
            Verifier::new(SECRET).verify(&token).await,
            Err(AuthError::Forged)
        );
    }

    #[tokio::test]
    async fn a_tampered_payload_is_forged() {
        let token = mint(SECRET, &claims(unix_now() + 60));
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let other = mint(SECRET, &claims(unix_now() + 60));
        parts[1] = other.split('.').nth(1).unwrap().to_owned();
        assert_eq!(
            Verifier::new(SECRET).verify(&parts.join(".")).await,
            Err(AuthError::Forged)
        );
    }

    #[tokio::test]
    async fn an_expired_token_is_refused_without_leeway() {
        let v = Verifier::new(SECRET);
        assert_eq!(
            v.verify(&mint(SECRET, &claims(unix_now() - 1))).await,
            Err(AuthError::Expired)
        );
        assert_eq!(
            v.verify(&mint(SECRET, &claims(unix_now()))).await,
            Err(AuthError::Expired)
        );
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        let v = Verifier::new(SECRET);
        for bad in ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30", "a.b.c.d"] {
            assert_eq!(v.verify(bad).await, Err(AuthError::Malformed), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn missing_exp_or_unknown_role_is_malformed() {
        let v = Verifier::new(SECRET);
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let no_exp = serde_json::json!({"sub": Uuid::new_v4(), "tenant_id": Uuid::new_v4(), "role": "owner"});
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &no_exp, &key).unwrap();
        assert_eq!(v.verify(&token).await, Err(AuthError::Malformed));
        let bad_role = serde_json::json!({
            "sub": Uuid::new_v4(), "tenant_id": Uuid::new_v4(), "role": "root", "exp": unix_now() + 60
        });
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &bad_role, &key).unwrap();
        assert_eq!(v.verify(&token).await, Err(AuthError::Malformed));
    }

    #[tokio::test]
    async fn other_algorithms_are_refused() {
        let v = Verifier::new(SECRET);
        let c = claims(unix_now() + 60);
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            assert_eq!(
                v.verify(&sign_with(alg, SECRET, &c)).await,
                Err(AuthError::WrongAlgorithm)
            );
        }
        // "alg": "none" with an empty signature.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = b64.encode(serde_json::to_vec(&c).unwrap());
        assert!(v.verify(&format!("{header}.{body}.")).await.is_err());
    }

    #[test]
    fn the_token_comes_from_the_query_or_the_bearer_header() {
        let uri: Uri = "/v1/ws?token=abc.def.ghi".parse().unwrap();
        assert_eq!(
            token_from_request(&uri, &HeaderMap::new()).as_deref(),
            Some("abc.def.ghi")
        );

        let uri: Uri = "/v1/ws".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(token_from_request(&uri, &headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  xyz "),
        );
        assert_eq!(token_from_request(&uri, &headers).as_deref(), Some("xyz"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(token_from_request(&uri, &headers), None);

        let uri: Uri = "/v1/ws?token=".parse().unwrap();
        assert_eq!(token_from_request(&uri, &HeaderMap::new()), None);
    }

    /// A verifier for the test keys' JWKS (tests/fixtures/jwt: test-only keys).
    async fn jwks_verifier(policy: TokenPolicy) -> Verifier {
        let dir = std::env::temp_dir().join(format!("lad-auth-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("jwks.json");
        let keys: Vec<serde_json::Value> = [
            include_str!("../tests/fixtures/jwt/rsa-a.jwk.json"),
            include_str!("../tests/fixtures/jwt/ec-a.jwk.json"),
        ]
        .iter()
        .map(|k| serde_json::from_str(k).unwrap())
        .collect();
        std::fs::write(&file, serde_json::json!({ "keys": keys }).to_string()).unwrap();
        let jwks = crate::jwks::Jwks::load(
            crate::jwks::JwksSource::File(file),
            crate::jwks::RefreshPolicy {
                max_age: Duration::from_secs(300),
                min_interval: Duration::from_secs(10),
            },
        )
        .await
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        Verifier::with_policy(TokenPolicy {
            jwks: Some(jwks),
            ..policy
        })
    }

    fn signed(alg: Algorithm, kid: &str, claims: &serde_json::Value) -> String {
        let key = match alg {
            Algorithm::RS256 => {
                EncodingKey::from_rsa_pem(include_bytes!("../tests/fixtures/jwt/rsa-a.pem"))
            }
            _ => EncodingKey::from_ec_pem(include_bytes!("../tests/fixtures/jwt/ec-a.pem")),
        }
        .unwrap();
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    fn json_claims(lifetime: i64) -> serde_json::Value {
        let now = unix_now();
        serde_json::json!({"sub": Uuid::new_v4(), "tenant_id": Uuid::new_v4(), "role": "viewer",
                           "iat": now, "exp": now + lifetime, "iss": "idp", "aud": ["hub", "x"]})
    }

    #[tokio::test]
    async fn jwks_tokens_verify_and_only_with_their_keys_algorithm() {
        let v = jwks_verifier(TokenPolicy::default()).await;
        let c = json_claims(60);
        assert!(v
            .verify(&signed(Algorithm::RS256, "rsa-a", &c))
            .await
            .is_ok());
        assert!(v
            .verify(&signed(Algorithm::ES256, "ec-a", &c))
            .await
            .is_ok());
        assert_eq!(
            v.verify(&signed(Algorithm::ES256, "rsa-a", &c)).await,
            Err(AuthError::WrongAlgorithm)
        );
        assert_eq!(
            v.verify(&signed(Algorithm::RS256, "nope", &c)).await,
            Err(AuthError::UnknownKey)
        );
        // No secret configured: HS256 is refused, whatever it was signed with.
        assert_eq!(
            v.verify(&sign_with(
                Algorithm::HS256,
                SECRET,
                &claims(unix_now() + 60)
            ))
            .await,
            Err(AuthError::WrongAlgorithm)
        );
    }

    #[tokio::test]
    async fn a_public_key_used_as_an_hmac_secret_is_forged() {
        // The classic key confusion: sign HS256 with the RSA public key's bytes.
        let public = include_str!("../tests/fixtures/jwt/rsa-a.jwk.json");
        let v = jwks_verifier(TokenPolicy {
            hs256_secret: Some(SECRET.into()),
            ..TokenPolicy::default()
        })
        .await;
        let token = sign_with(Algorithm::HS256, public, &claims(unix_now() + 60));
        assert_eq!(v.verify(&token).await, Err(AuthError::Forged));
    }

    #[tokio::test]
    async fn issuer_audience_and_lifetime_are_checked_when_configured() {
        let v = jwks_verifier(TokenPolicy {
            issuer: Some("idp".into()),
            audience: vec!["hub".into()],
            max_lifetime: Some(Duration::from_secs(600)),
            ..TokenPolicy::default()
        })
        .await;
        let ok = json_claims(600);
        assert!(v
            .verify(&signed(Algorithm::ES256, "ec-a", &ok))
            .await
            .is_ok());
        let with = |k: &str, val: serde_json::Value| {
            let mut c = ok.clone();
            c[k] = val;
            signed(Algorithm::ES256, "ec-a", &c)
        };
        assert_eq!(
            v.verify(&with("iss", "other".into())).await,
            Err(AuthError::WrongIssuer)
        );
        assert_eq!(
            v.verify(&with("aud", "other".into())).await,
            Err(AuthError::WrongAudience)
        );
        for claim in ["iss", "aud"] {
            let mut missing = ok.clone();
            missing.as_object_mut().unwrap().remove(claim);
            let token = signed(Algorithm::ES256, "ec-a", &missing);
            assert!(v.verify(&token).await.is_err(), "a token without {claim}");
        }
        let too_long = with("exp", (unix_now() + 601).into());
        assert_eq!(v.verify(&too_long).await, Err(AuthError::LifetimeTooLong));
        // Issued long ago with a long life: still too long, though little is left.
        let mut old = ok.clone();
        old["iat"] = (unix_now() - 10_000).into();
        old["exp"] = (unix_now() + 60).into();
        assert_eq!(
            v.verify(&signed(Algorithm::ES256, "ec-a", &old)).await,
            Err(AuthError::LifetimeTooLong)
        );
        // Without iat, the lifetime left counts.
        let mut no_iat = ok.clone();
        no_iat.as_object_mut().unwrap().remove("iat");
        assert!(v
            .verify(&signed(Algorithm::ES256, "ec-a", &no_iat))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn hs256_tokens_skip_the_identity_providers_iss_and_aud_but_not_the_lifetime_cap() {
        let v = Verifier::with_policy(TokenPolicy {
            hs256_secret: Some(SECRET.into()),
            issuer: Some("idp".into()),
            audience: vec!["hub".into()],
            max_lifetime: Some(Duration::from_secs(600)),
            ..TokenPolicy::default()
        });
        let dev = claims(unix_now() + 600);
        assert_eq!(v.verify(&mint(SECRET, &dev)).await, Ok(dev));
        let long = claims(unix_now() + 601);
        assert_eq!(
            v.verify(&mint(SECRET, &long)).await,
            Err(AuthError::LifetimeTooLong)
        );
    }
}
