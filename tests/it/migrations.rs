//! The shared SQL migrations apply cleanly to a real PostgreSQL, twice, and create the tables
//! and constraints the backends rely on.

use mesh_testkit::{DATABASE_URL_VAR, MIGRATOR, PgSchema, backend_url};
use sqlx::{PgPool, Row};

async fn columns(pool: &PgPool, schema: &str, table: &str) -> Vec<String> {
    sqlx::query(
        "SELECT column_name FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pool)
    .await
    .expect("read columns")
    .iter()
    .map(|row| row.get::<String, _>("column_name"))
    .collect()
}

#[tokio::test]
async fn migrations_apply_to_postgres_and_are_idempotent() {
    let Some(url) = backend_url(DATABASE_URL_VAR, "migrations test") else { return };
    // `create` applies the migrations to a fresh schema; a second run must be a no-op.
    let schema = PgSchema::create(&url).await;
    let pool = schema.pool().clone();
    MIGRATOR.run(&pool).await.expect("migrations apply a second time as a no-op");
    let schema_name = schema.name().to_owned();

    assert_eq!(
        columns(&pool, &schema_name, "mesh_price_cache").await,
        [
            "asset",
            "price",
            "blockchain",
            "timestamp",
            "source_node_id",
            "change_24h",
            "created_at",
            "updated_at",
            "timestamp_nanos"
        ]
    );
    assert_eq!(
        columns(&pool, &schema_name, "mesh_seen_messages").await,
        ["message_id", "seen_at", "expires_at"]
    );
    assert_eq!(
        columns(&pool, &schema_name, "mesh_peers").await,
        [
            "id",
            "address",
            "port",
            "status",
            "status_changed_at",
            "ban_reason",
            "banned_until",
            "public_key",
            "last_seen",
            "created_at"
        ]
    );

    // The peer table enforces its two indexes and its consistency rules.
    let insert = "INSERT INTO mesh_peers (id, address, port, status, ban_reason) VALUES ($1, $2::inet, $3, $4, $5::jsonb)";
    let peer = |address: &'static str, port: i32, status: &'static str, reason: Option<&'static str>| {
        sqlx::query(insert).bind(uuid::Uuid::new_v4()).bind(address).bind(port).bind(status).bind(reason)
    };
    peer("127.0.0.1", 9470, "valid", None).execute(&pool).await.expect("first peer");
    assert!(peer("127.0.0.1", 9470, "valid", None).execute(&pool).await.is_err(), "duplicate address");
    assert!(peer("127.0.0.2", 9470, "banned", None).execute(&pool).await.is_err(), "ban without reason");
    assert!(peer("127.0.0.3", 9470, "sleeping", None).execute(&pool).await.is_err(), "unknown status");
    assert!(peer("not an ip", 9470, "valid", None).execute(&pool).await.is_err(), "bad address");
    peer("::1", 9471, "banned", Some(r#"{"Misbehaviour": {"score": 120}}"#))
        .execute(&pool)
        .await
        .expect("banned peer with reason");

    schema.cleanup().await;
}
