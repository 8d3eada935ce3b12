//! Secrets the hub is configured with: the rule an HS256 secret must meet
//! before `serve` starts, and redaction of values that embed credentials
//! (a `DATABASE_URL` password, SASL properties) wherever they are shown.

use std::fmt;

/// Shortest HS256 secret `serve` accepts: RFC 7518 §3.2 asks for a key at
/// least as long as the hash output (256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// Secrets that appear in this project's history, its examples, or in
/// tutorials. Whoever reads them can mint tokens for any tenant.
const KNOWN_DEFAULTS: &[&str] = &[
    "change-me",
    "changeme",
    "dev-secret-change-me",
    "secret",
    "your-256-bit-secret",
    "your-secret-key",
    "integration-test-secret",
    "gateway-test-secret",
    "bench-secret",
    "test-secret",
];

/// Why an HS256 secret is refused. The message never contains the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WeakSecret {
    #[error("LAD_JWT_SECRET is empty")]
    Empty,
    #[error("LAD_JWT_SECRET is {0} bytes; at least {MIN_HS256_SECRET_BYTES} are required (e.g. `openssl rand -hex 32`)")]
    TooShort(usize),
    #[error("LAD_JWT_SECRET is a published default; generate one (e.g. `openssl rand -hex 32`)")]
    KnownDefault,
    #[error(
        "LAD_JWT_SECRET repeats a single character; generate one (e.g. `openssl rand -hex 32`)"
    )]
    OneCharacter,
}

/// Accepts a secret only if it is long enough and not a known default.
pub fn check_hs256_secret(secret: &str) -> Result<(), WeakSecret> {
    let trimmed = secret.trim();
    if trimmed.is_empty() {
        return Err(WeakSecret::Empty);
    }
    if KNOWN_DEFAULTS
        .iter()
        .any(|d| d.eq_ignore_ascii_case(trimmed))
    {
        return Err(WeakSecret::KnownDefault);
    }
    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(WeakSecret::TooShort(secret.len()));
    }
    let mut chars = secret.chars();
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return Err(WeakSecret::OneCharacter);
    }
    Ok(())
}

/// A URL shown with its password replaced, e.g. in `Debug` output.
pub struct RedactedUrl<'a>(pub &'a str);

impl fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.0))
    }
}

impl fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(self.0))
    }
}

/// `scheme://user:password@host/...` → `scheme://user:***@host/...`; also
/// a `password=` query parameter. Anything else is returned unchanged.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                out.replace_range(start..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_sensitive_key(k) => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

/// Whether a configuration key names a credential (librdkafka's
/// `sasl.password`, `ssl.key.password`, `sasl.oauthbearer.client.secret`,
/// `ssl.key.pem`, ...; a URL's `password`).
pub fn is_sensitive_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "key.pem", "sasl.jaas.config", "token"]
        .iter()
        .any(|s| k.contains(s))
}

/// `k=v` properties shown with credential values replaced.
pub struct RedactedProps<'a>(pub &'a [String]);

impl fmt::Debug for RedactedProps<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self
            .0
            .iter()
            .flat_map(|s| s.split(','))
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_sensitive_key(k) => format!("{}=***", k.trim()),
                _ => kv.trim().to_owned(),
            })
            .collect();
        f.debug_list().entries(shown).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_short_default_and_one_character_secrets_are_refused() {
        assert_eq!(check_hs256_secret(""), Err(WeakSecret::Empty));
        assert_eq!(check_hs256_secret("   "), Err(WeakSecret::Empty));
        assert_eq!(
            check_hs256_secret("change-me"),
            Err(WeakSecret::KnownDefault)
        );
        assert_eq!(
            check_hs256_secret("Dev-Secret-Change-Me"),
            Err(WeakSecret::KnownDefault)
        );
        assert_eq!(
            check_hs256_secret("0123456789"),
            Err(WeakSecret::TooShort(10))
        );
        assert_eq!(
            check_hs256_secret(&"a".repeat(40)),
            Err(WeakSecret::OneCharacter)
        );
        assert_eq!(check_hs256_secret(&"ab".repeat(16)), Ok(()));
    }

    #[test]
    fn refusals_never_contain_the_secret() {
        let secret = "short-but-private";
        let e = check_hs256_secret(secret).unwrap_err();
        assert!(!e.to_string().contains(secret));
    }

    #[test]
    fn url_passwords_are_redacted_and_the_rest_is_kept() {
        assert_eq!(
            redact_url("postgres://lad:s3cr%40t@db.internal:5432/lad?sslmode=require"),
            "postgres://lad:***@db.internal:5432/lad?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/lad?user=lad&password=hunter2&sslmode=verify-full"),
            "postgres://db/lad?user=lad&password=***&sslmode=verify-full"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/lad_hub"),
            "postgres://postgres@127.0.0.1:5432/lad_hub"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn credential_properties_are_redacted() {
        let props = vec![
            "security.protocol=SASL_SSL,sasl.username=hub".to_owned(),
            "sasl.password=hunter2".to_owned(),
            "ssl.key.password=k".to_owned(),
        ];
        let shown = format!("{:?}", RedactedProps(&props));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sasl.password=***"), "{shown}");
        assert!(shown.contains("sasl.username=hub"), "{shown}");
        assert!(shown.contains("ssl.key.password=***"), "{shown}");
    }
}
