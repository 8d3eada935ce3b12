//! `lad-hub migrate` on an empty database creates every table the seed names.

use std::process::Command;

/// The 49 tables `seeds/000_3650eedd7b2e3b8a.txt` names (its header says 50).
const SEED_TABLES: &[&str] = &[
    "tenants",
    "users",
    "user_identities",
    "memberships",
    "tenant_features",
    "user_capabilities",
    "tenant_invitations",
    "domain_events",
    "feature_flags",
    "leads",
    "lead_stages",
    "lead_statuses",
    "lead_notes",
    "lead_attachments",
    "lead_bookings",
    "lead_social",
    "campaigns",
    "campaign_steps",
    "campaign_leads",
    "campaign_lead_activities",
    "communication_templates",
    "email_accounts",
    "social_linkedin_accounts",
    "campaign_linkedin_accounts",
    "company_search_cache",
    "employees_cache",
    "education_counsellors",
    "education_students",
    "user_credits",
    "credit_transactions",
    "billing_wallets",
    "billing_ledger_transactions",
    "billing_usage_events",
    "billing_pricing_catalog",
    "billing_invoices",
    "billing_feature_entitlements",
    "ai_conversations",
    "ai_messages",
    "ai_icp_profiles",
    "ai_keyword_expansions",
    "voice_agent_voices",
    "voice_agents",
    "voice_agent_numbers",
    "voice_user_profiles",
    "voice_permissions",
    "voice_call_batches",
    "voice_call_batch_entries",
    "voice_call_logs",
    "voice_call_analysis",
];

const HUB_TABLES: &[&str] = &[
    "voice_call_stats_daily",
    "voice_call_transcripts",
    "campaign_step_stats",
    "billing_cost_daily",
    "hub_consumer_offsets",
    "hub_processed_events",
    "hub_dead_letters",
    "hub_outbox",
];

#[tokio::test]
async fn migrate_on_an_empty_database_creates_every_seed_table() {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (root, _) = base.rsplit_once('/').expect("DATABASE_URL has a database");
    let name = format!("lad_migrate_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{root}/{name}");

    for _ in 0..2 {
        // Twice: the second run finds everything applied and changes nothing.
        let status = Command::new(env!("CARGO_BIN_EXE_lad-hub"))
            .arg("migrate")
            .env("DATABASE_URL", &url)
            .status()
            .expect("run lad-hub migrate");
        assert!(status.success());
    }

    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    for t in SEED_TABLES.iter().chain(HUB_TABLES) {
        assert!(tables.iter().any(|x| x == t), "table {t} missing");
    }
    assert_eq!(SEED_TABLES.len(), 49);
    let partitions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'voice_call_logs'::regclass",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        partitions >= 5,
        "monthly partitions are created ahead: {partitions}"
    );
    pool.close().await;
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
}
