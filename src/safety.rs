//! What `serve` checks and builds before it accepts a client: token
//! verification (refusing to start on a weak secret or an unreadable JWKS),
//! the connection and subscribe limits, and the snapshot pool that keeps
//! client reads off the pipelines' connections.

use crate::auth::{TokenPolicy, Verifier};
use crate::config::{AuthArgs, DbArgs, LimitArgs};
use crate::gateway::limits::LimitConfig;
use crate::jwks::{Jwks, JwksError, JwksSource, RefreshPolicy};
use crate::secrets::{check_hs256_secret, WeakSecret};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// Why `serve` refuses to start. Never contains a secret.
#[derive(Debug, thiserror::Error)]
pub enum StartRefused {
    #[error("refusing to start: {0}")]
    WeakSecret(#[from] WeakSecret),
    #[error(
        "refusing to start: no way to verify tokens; set LAD_JWT_SECRET (32+ bytes, \
         e.g. `openssl rand -hex 32`) or LAD_JWKS_URL / LAD_JWKS_FILE"
    )]
    NoVerifier,
    #[error("refusing to start: {0}")]
    Jwks(#[from] JwksError),
    #[error("refusing to start: DATABASE_URL: {0}")]
    DatabaseUrl(sqlx::Error),
}

/// The verifier of WebSocket tokens the configuration describes.
pub async fn token_verifier(auth: &AuthArgs) -> Result<Verifier, StartRefused> {
    if let Some(secret) = &auth.jwt_secret {
        check_hs256_secret(secret)?;
    }
    let source = match (&auth.jwks_url, &auth.jwks_file) {
        (Some(url), _) => Some(JwksSource::Url(url.clone())),
        (None, Some(path)) => Some(JwksSource::File(path.clone())),
        (None, None) => None,
    };
    if auth.jwt_secret.is_none() && source.is_none() {
        return Err(StartRefused::NoVerifier);
    }
    let jwks = match source {
        Some(source) => {
            let policy = RefreshPolicy {
                max_age: Duration::from_secs(auth.jwks_refresh_secs.max(1)),
                min_interval: Duration::from_secs(auth.jwks_min_refresh_secs),
            };
            let jwks = Jwks::load(source, policy).await?;
            tracing::info!(kids = ?jwks.kids().await, "identity provider keys loaded");
            Some(jwks)
        }
        None => None,
    };
    Ok(Verifier::with_policy(TokenPolicy {
        hs256_secret: auth.jwt_secret.clone(),
        jwks,
        issuer: auth.jwt_issuer.clone(),
        audience: auth.jwt_audience.clone(),
        max_lifetime: auth.jwt_max_lifetime_secs.map(Duration::from_secs),
    }))
}

impl LimitArgs {
    pub fn config(&self) -> LimitConfig {
        LimitConfig {
            max_connections: self.max_connections,
            max_connections_per_tenant: self.max_connections_per_tenant,
            max_connections_per_user: self.max_connections_per_user,
            subscribe_rate: self.subscribe_rate,
            subscribe_burst: self.subscribe_burst,
            frame_rate: self.ws_frame_rate,
            frame_burst: self.ws_frame_burst,
        }
    }
}

/// Name of the snapshot pool's sessions in `pg_stat_activity`.
pub const SNAPSHOT_APPLICATION_NAME: &str = "lad-hub snapshots";

/// The pool the gateway reads snapshots and capabilities with: small, so a
/// subscribe flood queues here instead of in Postgres, and with a
/// `statement_timeout`, so no snapshot holds a backend long. Connected on
/// first use.
pub fn snapshot_pool(db: &DbArgs, limits: &LimitArgs) -> Result<PgPool, StartRefused> {
    let opts = PgConnectOptions::from_str(&db.database_url)
        .map_err(StartRefused::DatabaseUrl)?
        .application_name(SNAPSHOT_APPLICATION_NAME)
        .options([(
            "statement_timeout",
            limits.snapshot_timeout_ms.max(1).to_string(),
        )]);
    Ok(PgPoolOptions::new()
        .max_connections(limits.snapshot_pool_size.max(1))
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(opts))
}

#[cfg(test)]
mod tests {
    use crate::config::Cli;
    use clap::Parser;

    #[test]
    fn the_parsed_configuration_prints_without_its_secrets() {
        let secret = "0123456789abcdef0123456789abcdef-private";
        let cli = Cli::try_parse_from([
            "lad-hub",
            "serve",
            "--database-url",
            "postgres://lad:db-password-1@db:5432/lad?sslmode=require",
            "--jwt-secret",
            secret,
            "--kafka-prop",
            "security.protocol=SASL_SSL,sasl.password=kafka-password-2",
            "--kafka-producer-prop",
            "ssl.key.password=key-password-3",
            "--jwks-url",
            "https://idp:idp-password-4@id.example/jwks.json",
        ])
        .unwrap();
        let shown = format!("{cli:?}");
        for hidden in [
            secret,
            "db-password-1",
            "kafka-password-2",
            "key-password-3",
            "idp-password-4",
        ] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
        assert!(shown.contains("postgres://lad:***@db:5432/lad?sslmode=require"));
        assert!(shown.contains("sasl.password=***"));
        assert!(shown.contains("security.protocol=SASL_SSL"));
    }
}
