//! `sqlx::migrate!` (src/startup.rs) embeds `migrations/` when the crate
//! compiles; without this, a new migration alone would not recompile it
//! and the hub would run without it (sqlx's documented remedy).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
