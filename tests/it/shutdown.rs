//! SIGTERM: batches finish, the relay drains, sockets close with 1001.

use crate::support::*;
use sqlx::PgPool;
use uuid::Uuid;

#[sqlx::test(migrations = "./migrations")]
async fn sigterm_closes_sockets_with_going_away(pool: PgPool) {
    let topics = Topics::new();
    let mut hub = Hub::start(&pool, &topics, HubOptions::default()).await;
    let tenant = Uuid::new_v4();
    let mut client =
        Client::connect(&hub.ws_url(&token(tenant, Uuid::new_v4(), "member", &[]))).await;
    assert_eq!(
        client.subscribe(&format!("tenant:{tenant}:calls")).await["op"],
        "subscribed"
    );
    hub.terminate();
    assert_eq!(client.close_code(10).await, Some(1001));
}
