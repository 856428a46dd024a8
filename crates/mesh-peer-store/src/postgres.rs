//! [`PostgresPeerStore`]: peers in the `mesh_peers` table (see `migrations/`).
//!
//! The table's primary key and its `mesh_peers_address_port_key` unique constraint are the two
//! indexes, so duplicates are refused atomically by the database, also between processes; a
//! unique violation becomes [`Error::DuplicatePeer`]. `address` is an `INET`, bound as text and
//! read back through `host(address)`.
//!
//! Expired bans are lifted on the way out: the queries compare each row's effective status
//! (`unknown` once `banned_until` has passed) and each row read is turned into what the store
//! reports with [`Peer::lift_expired_ban`], both against the same instant, taken from this
//! process's clock like the `until` of a ban.

use std::net::IpAddr;

use async_trait::async_trait;
use mesh_storage_core::{BackendError, Corrupt};
use mesh_types::chrono::{SubsecRound, Utc};
use mesh_types::{PUBLIC_KEY_LEN, PublicKey, Timestamp};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::types::Json;
use sqlx::{Postgres, Row};
use uuid::Uuid;

use crate::peer::now;
use crate::{BanReason, DuplicateKey, Error, Peer, PeerId, PeerStatus, PeerStore, Result};

const BACKEND: &str = "postgres";

/// The columns [`peer_from_row`] reads, followed by the rest of a query.
macro_rules! select_peers {
    ($($rest:expr),+) => {
        concat!(
            "SELECT id, host(address) AS address, port, status, status_changed_at, ban_reason, \
             banned_until, public_key, last_seen FROM mesh_peers ",
            $($rest),+
        )
    };
}

/// A row's status as reported at `$1`: an expired ban reads as `unknown`.
macro_rules! effective_status {
    () => {
        "(CASE WHEN status = 'banned' AND banned_until <= $1 THEN 'unknown' ELSE status END)"
    };
}

/// Peers in PostgreSQL, shared by every process using the same database.
#[derive(Debug, Clone)]
pub struct PostgresPeerStore {
    pool: PgPool,
}

impl PostgresPeerStore {
    /// A store on `pool`, migrated with the workspace's `migrations/`.
    pub const fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// As [`BackendError::postgres`], but a unique violation means `peer` collides with a stored peer.
fn write_error(err: sqlx::Error, peer: &Peer) -> Error {
    if let sqlx::Error::Database(db) = &err
        && db.code().as_deref() == Some("23505")
    {
        let key =
            if db.constraint() == Some("mesh_peers_pkey") { DuplicateKey::Id } else { DuplicateKey::Address };
        return Error::DuplicatePeer { key, id: peer.id, address: peer.socket_addr() };
    }
    BackendError::postgres(err).into()
}

fn check(peer: &Peer) -> Result<()> {
    match peer.inconsistency() {
        Some(detail) => Err(Error::InvalidPeer { id: peer.id, detail }),
        None => Ok(()),
    }
}

fn count_from(count: i64) -> usize {
    usize::try_from(count).unwrap_or(0)
}

/// Parses a row of `select_peers!` back into a peer, as reported at `at`.
///
/// # Errors
/// [`Error::Corrupt`] for anything that is not a peer; the table's constraints make that rare,
/// but a row must never panic the node.
fn peer_from_row(row: &PgRow, at: Timestamp) -> Result<Peer> {
    let id: Uuid =
        row.try_get("id").map_err(|err| Corrupt::because(BACKEND, "peer row", "column id", err))?;
    let entry = || format!("peer {id}");
    // A column that cannot be decoded as its type.
    let column =
        |name: &'static str| move |err| Corrupt::because(BACKEND, entry(), format!("column {name}"), err);

    let address: String = row.try_get("address").map_err(column("address"))?;
    let address: IpAddr = address.parse().map_err(|err| {
        Corrupt::because(BACKEND, entry(), format!("address {address:?} is not an IP address"), err)
    })?;
    let port: i32 = row.try_get("port").map_err(column("port"))?;
    let port = u16::try_from(port)
        .map_err(|_| Corrupt::new(BACKEND, entry(), format!("port {port} is out of range")))?;
    let status: String = row.try_get("status").map_err(column("status"))?;
    let status: PeerStatus = status
        .parse()
        .map_err(|err| Corrupt::because(BACKEND, entry(), format!("status {status:?}"), err))?;
    let ban_reason: Option<serde_json::Value> = row.try_get("ban_reason").map_err(column("ban_reason"))?;
    let ban_reason = ban_reason
        .map(|json| {
            serde_json::from_value::<BanReason>(json.clone()).map_err(|err| {
                Corrupt::because(BACKEND, entry(), format!("ban reason {json} is not a BanReason"), err)
            })
        })
        .transpose()?;
    let public_key: Option<Vec<u8>> = row.try_get("public_key").map_err(column("public_key"))?;
    let public_key = public_key
        .map(|bytes| {
            <[u8; PUBLIC_KEY_LEN]>::try_from(bytes.as_slice()).map(PublicKey::from_bytes).map_err(|_| {
                Corrupt::new(
                    BACKEND,
                    entry(),
                    format!("public key has {} bytes, not {PUBLIC_KEY_LEN}", bytes.len()),
                )
            })
        })
        .transpose()?;

    let mut peer = Peer {
        id,
        address,
        port,
        status,
        status_changed_at: row.try_get("status_changed_at").map_err(column("status_changed_at"))?,
        ban_reason,
        banned_until: row.try_get("banned_until").map_err(column("banned_until"))?,
        public_key,
        last_seen: row.try_get("last_seen").map_err(column("last_seen"))?,
    };
    if let Some(problem) = peer.inconsistency() {
        return Err(Corrupt::new(BACKEND, entry(), problem).into());
    }
    peer.lift_expired_ban(at);
    Ok(peer)
}

fn peers_from_rows(rows: &[PgRow], at: Timestamp) -> Result<Vec<Peer>> {
    rows.iter().map(|row| peer_from_row(row, at)).collect()
}

/// Binds the columns of `peer`, in the order of the table, as `$1` … `$9`.
fn bind_peer<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    peer: &Peer,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(peer.id)
        .bind(peer.address.to_string())
        .bind(i32::from(peer.port))
        .bind(peer.status.as_str())
        .bind(peer.status_changed_at)
        .bind(peer.ban_reason.map(Json))
        .bind(peer.banned_until)
        .bind(peer.public_key.map(|key| key.as_bytes().to_vec()))
        .bind(peer.last_seen)
}

#[async_trait]
impl PeerStore for PostgresPeerStore {
    async fn create(&self, peer: Peer) -> Result<()> {
        check(&peer)?;
        let peer = peer.normalized();
        let query = sqlx::query(
            "INSERT INTO mesh_peers \
                (id, address, port, status, status_changed_at, ban_reason, banned_until, public_key, last_seen) \
             VALUES ($1, $2::inet, $3, $4, $5, $6, $7, $8, $9)",
        );
        bind_peer(query, &peer).execute(&self.pool).await.map_err(|err| write_error(err, &peer))?;
        Ok(())
    }

    async fn read(&self, id: PeerId) -> Result<Peer> {
        let at = Utc::now();
        let row = sqlx::query(select_peers!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(BackendError::postgres)?
            .ok_or(Error::NotFound(id))?;
        peer_from_row(&row, at)
    }

    async fn update(&self, peer: Peer) -> Result<()> {
        check(&peer)?;
        let peer = peer.normalized();
        let query = sqlx::query(
            "UPDATE mesh_peers SET address = $2::inet, port = $3, status = $4, status_changed_at = $5, \
                ban_reason = $6, banned_until = $7, public_key = $8, last_seen = $9 \
             WHERE id = $1",
        );
        let done =
            bind_peer(query, &peer).execute(&self.pool).await.map_err(|err| write_error(err, &peer))?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(peer.id));
        }
        Ok(())
    }

    async fn delete(&self, id: PeerId) -> Result<()> {
        let done = sqlx::query("DELETE FROM mesh_peers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(BackendError::postgres)?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(id));
        }
        Ok(())
    }

    async fn list_all(&self) -> Result<Vec<Peer>> {
        let at = Utc::now();
        let rows = sqlx::query(select_peers!("ORDER BY id"))
            .fetch_all(&self.pool)
            .await
            .map_err(BackendError::postgres)?;
        peers_from_rows(&rows, at)
    }

    async fn find_by_status(&self, status: PeerStatus) -> Result<Vec<Peer>> {
        let at = Utc::now();
        let rows = sqlx::query(select_peers!("WHERE ", effective_status!(), " = $2 ORDER BY id"))
            .bind(at)
            .bind(status.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(BackendError::postgres)?;
        peers_from_rows(&rows, at)
    }

    async fn find_by_ip_port(&self, ip: IpAddr, port: u16) -> Result<Option<Peer>> {
        let at = Utc::now();
        let row = sqlx::query(select_peers!("WHERE address = $1::inet AND port = $2"))
            .bind(ip.to_string())
            .bind(i32::from(port))
            .fetch_optional(&self.pool)
            .await
            .map_err(BackendError::postgres)?;
        row.map(|row| peer_from_row(&row, at)).transpose()
    }

    async fn count_by_status(&self, status: PeerStatus) -> Result<usize> {
        let count: i64 = sqlx::query_scalar(concat!(
            "SELECT count(*) FROM mesh_peers WHERE ",
            effective_status!(),
            " = $2"
        ))
        .bind(Utc::now())
        .bind(status.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(BackendError::postgres)?;
        Ok(count_from(count))
    }

    async fn ban(&self, id: PeerId, reason: BanReason, until: Timestamp) -> Result<()> {
        let done = sqlx::query(
            "UPDATE mesh_peers SET status = 'banned', status_changed_at = $2, ban_reason = $3, banned_until = $4 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(now())
        .bind(Json(reason))
        .bind(until.trunc_subsecs(6))
        .execute(&self.pool)
        .await
        .map_err(BackendError::postgres)?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(id));
        }
        Ok(())
    }

    async fn unban_expired(&self) -> Result<usize> {
        // The same transformation as `Peer::lift_expired_ban`, so what reads reported before
        // is what is stored after.
        let done = sqlx::query(
            "UPDATE mesh_peers SET status = 'unknown', \
                status_changed_at = GREATEST(status_changed_at, banned_until), \
                ban_reason = NULL, banned_until = NULL \
             WHERE status = 'banned' AND banned_until <= $1",
        )
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(BackendError::postgres)?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use mesh_testkit::{DATABASE_URL_VAR, PgSchema, backend_url};

    use super::*;
    use crate::conformance::{self, Fixture};

    crate::peer_store_conformance!(suite, async {
        let url = backend_url(DATABASE_URL_VAR, "postgres peer store conformance")?;
        let schema = PgSchema::create(&url).await;
        let store = PostgresPeerStore::new(schema.pool().clone());
        Some(Fixture::new(Arc::new(store)).then(schema.cleanup()))
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_pools_admit_one_peer_per_address() {
        let Some(url) = backend_url(DATABASE_URL_VAR, "postgres peer store across pools") else { return };
        let schema = PgSchema::create(&url).await;
        // Two pools, as two processes would have, still admit exactly one peer per address.
        let first = PostgresPeerStore::new(schema.pool().clone());
        let second = PostgresPeerStore::new(schema.second_pool().await);
        conformance::one_peer_per_address_under_concurrency(&[Arc::new(first), Arc::new(second)]).await;
        schema.cleanup().await;
    }

    #[tokio::test]
    async fn ban_reasons_are_stored_as_tagged_json() {
        let Some(url) = backend_url(DATABASE_URL_VAR, "postgres peer store ban json") else { return };
        let schema = PgSchema::create(&url).await;
        let store = PostgresPeerStore::new(schema.pool().clone());
        let peer = Peer::new("10.0.0.1".parse().unwrap(), 9470);
        store.create(peer.clone()).await.unwrap();
        let until = Utc::now() + mesh_types::chrono::TimeDelta::hours(1);
        store.ban(peer.id, BanReason::Misbehaviour { score: 120 }, until).await.unwrap();
        let (reason, status): (serde_json::Value, String) =
            sqlx::query_as("SELECT ban_reason, status FROM mesh_peers WHERE id = $1")
                .bind(peer.id)
                .fetch_one(schema.pool())
                .await
                .unwrap();
        assert_eq!(reason, serde_json::json!({"Misbehaviour": {"score": 120}}));
        assert_eq!(status, "banned");

        let mut other = Peer::new("10.0.0.2".parse().unwrap(), 9470);
        other.ban(BanReason::NetworkMismatch, until);
        store.create(other.clone()).await.unwrap();
        let reason: serde_json::Value = sqlx::query_scalar("SELECT ban_reason FROM mesh_peers WHERE id = $1")
            .bind(other.id)
            .fetch_one(schema.pool())
            .await
            .unwrap();
        assert_eq!(reason, serde_json::json!("NetworkMismatch"));
        schema.cleanup().await;
    }

    #[tokio::test]
    async fn rows_that_are_not_peers_are_corrupt_not_a_panic() {
        let Some(url) = backend_url(DATABASE_URL_VAR, "postgres peer store corrupt rows") else { return };
        let schema = PgSchema::create(&url).await;
        let pool = schema.pool();
        let store = PostgresPeerStore::new(pool.clone());
        // The throwaway schema may lose the constraints that normally keep such rows out.
        for constraint in ["mesh_peers_status_check", "mesh_peers_public_key_check"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("ALTER TABLE mesh_peers DROP CONSTRAINT {constraint}")))
                .execute(pool)
                .await
                .unwrap();
        }
        let insert = "INSERT INTO mesh_peers (id, address, port, status, ban_reason, public_key) \
                      VALUES ($1, $2::inet, 9470, $3, $4::jsonb, $5)";
        // Address, status, ban reason, public key, and what the error must mention.
        type Case = (&'static str, &'static str, Option<&'static str>, Option<Vec<u8>>, &'static str);
        let cases: [Case; 3] = [
            ("10.0.0.1", "sleeping", None, None, "sleeping"),
            ("10.0.0.2", "banned", Some(r#"{"Nope": 1}"#), None, "Nope"),
            ("10.0.0.3", "valid", None, Some(vec![7; 31]), "31 bytes"),
        ];
        for (address, status, reason, key, expected) in cases {
            let id = Uuid::new_v4();
            sqlx::query(insert)
                .bind(id)
                .bind(address)
                .bind(status)
                .bind(reason)
                .bind(key)
                .execute(pool)
                .await
                .unwrap();
            let err = store.read(id).await.unwrap_err();
            let Error::Corrupt(Corrupt { entry, detail, .. }) = &err else {
                panic!("expected corrupt, got {err}")
            };
            assert!(entry.contains(&id.to_string()) && detail.contains(expected), "{err}");
            assert!(matches!(store.list_all().await, Err(Error::Corrupt { .. })));
            sqlx::query("DELETE FROM mesh_peers WHERE id = $1").bind(id).execute(pool).await.unwrap();
        }
        schema.cleanup().await;
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_retryable_error() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy("postgres://postgres@127.0.0.1:1/test")
            .unwrap();
        let store = PostgresPeerStore::new(pool);
        let err = store.list_all().await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
}
