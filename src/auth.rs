//! JWT verification for the WebSocket (contract §7) and token minting for
//! the `token` subcommand and tests.
//!
//! Only HS256 is accepted, whatever the token's header claims: accepting the
//! header's algorithm is how "alg: none" and key-confusion forgeries get in.

use axum::http::{header, HeaderMap, Uri};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
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
/// names the class of failure, never the secret or the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("invalid token signature")]
    Forged,
    #[error("token algorithm must be HS256")]
    WrongAlgorithm,
    #[error("token expired")]
    Expired,
}

#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier { .. }")
    }
}

impl Verifier {
    pub fn new(secret: &str) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        // The contract's tokens carry no audience; a stray `aud` must not
        // turn a valid token into a refusal.
        validation.validate_aud = false;
        Verifier {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::Forged,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::WrongAlgorithm
                }
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Malformed,
            },
        )?;
        // jsonwebtoken accepts `exp == now`; a token in its last second would
        // open a socket only to close it with 4001 at once.
        if data.claims.exp <= unix_now() {
            return Err(AuthError::Expired);
        }
        Ok(data.claims)
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

    #[test]
    fn a_minted_token_verifies_to_the_same_claims() {
        let c = claims(unix_now() + 60);
        assert_eq!(Verifier::new(SECRET).verify(&mint(SECRET, &c)), Ok(c));
    }

    #[test]
    fn caps_default_to_empty() {
        let c = Claims {
            caps: Vec::new(),
            ..claims(unix_now() + 60)
        };
        let got = Verifier::new(SECRET).verify(&mint(SECRET, &c)).unwrap();
        assert!(got.caps.is_empty());
    }

    #[test]
    fn a_token_signed_with_another_secret_is_forged() {
        let token = mint("other-secret", &claims(unix_now() + 60));
        assert_eq!(Verifier::new(SECRET).verify(&token), Err(AuthError::Forged));
    }

    #[test]
    fn a_tampered_payload_is_forged() {
        let token = mint(SECRET, &claims(unix_now() + 60));
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let other = mint(SECRET, &claims(unix_now() + 60));
        parts[1] = other.split('.').nth(1).unwrap().to_owned();
        assert_eq!(
            Verifier::new(SECRET).verify(&parts.join(".")),
            Err(AuthError::Forged)
        );
    }

    #[test]
    fn an_expired_token_is_refused_without_leeway() {
        let v = Verifier::new(SECRET);
        assert_eq!(
            v.verify(&mint(SECRET, &claims(unix_now() - 1))),
            Err(AuthError::Expired)
        );
        assert_eq!(
            v.verify(&mint(SECRET, &claims(unix_now()))),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let v = Verifier::new(SECRET);
        for bad in ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30", "a.b.c.d"] {
            assert_eq!(v.verify(bad), Err(AuthError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn missing_exp_or_unknown_role_is_malformed() {
        let v = Verifier::new(SECRET);
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let no_exp = serde_json::json!({"sub": Uuid::new_v4(), "tenant_id": Uuid::new_v4(), "role": "owner"});
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &no_exp, &key).unwrap();
        assert_eq!(v.verify(&token), Err(AuthError::Malformed));
        let bad_role = serde_json::json!({
            "sub": Uuid::new_v4(), "tenant_id": Uuid::new_v4(), "role": "root", "exp": unix_now() + 60
        });
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &bad_role, &key).unwrap();
        assert_eq!(v.verify(&token), Err(AuthError::Malformed));
    }

    #[test]
    fn other_algorithms_are_refused() {
        let v = Verifier::new(SECRET);
        let c = claims(unix_now() + 60);
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            assert_eq!(
                v.verify(&sign_with(alg, SECRET, &c)),
                Err(AuthError::WrongAlgorithm)
            );
        }
        // "alg": "none" with an empty signature.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = b64.encode(serde_json::to_vec(&c).unwrap());
        assert!(v.verify(&format!("{header}.{body}.")).is_err());
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
}
