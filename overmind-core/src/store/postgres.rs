//! A shared store for clusters: PostgreSQL, through a connection pool.
//!
//! ```sql
//! CREATE TABLE overmind_state (kind TEXT, id TEXT, version BIGINT, data BYTEA, PRIMARY KEY (kind, id));
//! CREATE INDEX overmind_state_list ON overmind_state (kind, id COLLATE "C");
//! CREATE SEQUENCE overmind_state_version;
//! CREATE TABLE overmind_epoch_floor (cluster TEXT PRIMARY KEY, epoch BIGINT);
//! ```
//!
//! The schema is created on connect (under an advisory lock, so nodes starting together do
//! not race), and completed if an older version created part of it. Versions come from the
//! sequence: unique, never reused, even after a delete. Every save is one statement
//! conditional on the version, committed before it returns.
//!
//! Listing a kind compares and orders ids under the `"C"` collation, which is byte order as
//! the contract requires; the database's default collation (the primary key's) is usually
//! not (`en_US` puts `"Z"` after `"a"` and `"é"` before `"f"`). `overmind_state_list` is the
//! index that serves that order, so a page costs its own length, not the kind's size. On a
//! database whose table predates it, the first start after an upgrade builds it, holding off
//! writes to the table while it does.

use std::time::Duration;

use deadpool_postgres::{Pool, Runtime};
use tokio_postgres::NoTls;

use super::{BoxFuture, StateStore, StoreError, Stored, Version};
use crate::ActorKey;

const NAME: &str = "postgres";
const SCHEMA_LOCK: i64 = 0x6f76_6d64_7374_6174; // "ovmdstat"

/// A [`StateStore`] in PostgreSQL.
pub struct PostgresStore {
    pool: Pool,
    location: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// An error with its causes: tokio-postgres puts the server's message in the source.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend {
        store: NAME,
        reason: chain(&e),
        source: Some(std::sync::Arc::new(e)),
    }
}

/// A stored floor; the table's check keeps it non-negative, so a negative one is damage.
fn floor_of(stored: Option<i64>) -> Result<u64, StoreError> {
    match stored {
        None => Ok(0),
        Some(epoch) => u64::try_from(epoch).map_err(|_| StoreError::Backend {
            store: NAME,
            reason: format!("overmind_epoch_floor holds a negative epoch ({epoch})"),
            source: None,
        }),
    }
}

/// Column `idx` of `row`, refused with a typed error if its type is not what was asked.
fn column<'r, T: tokio_postgres::types::FromSql<'r>>(
    row: &'r tokio_postgres::Row,
    idx: usize,
) -> Result<T, StoreError> {
    row.try_get(idx).map_err(backend)
}

/// A stored version. Versions come from a sequence that starts at 1, so a negative one is
/// damage.
fn version_of(row: &tokio_postgres::Row) -> Result<Version, StoreError> {
    let stored: i64 = column(row, 0)?;
    u64::try_from(stored)
        .map(Version)
        .map_err(|_| StoreError::Backend {
            store: NAME,
            reason: format!("overmind_state holds a negative version ({stored})"),
            source: None,
        })
}

/// A version as the column's type; None for one no row can hold (so none matches it).
fn as_column(version: Version) -> Option<i64> {
    i64::try_from(version.0).ok()
}

/// The address part of a URL, without credentials, for messages.
fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_and_user, rest)) => {
            let scheme = scheme_and_user.split("://").next().unwrap_or("postgres");
            format!("{scheme}://…@{rest}")
        }
        None => url.to_owned(),
    }
}

impl PostgresStore {
    /// Connects with a URL such as `postgres://user:password@host:5432/db` and creates the
    /// schema if needed. `max_connections` bounds the pool.
    pub async fn connect(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let location = redact(url);
        let open_err = |reason: String| StoreError::Open {
            store: NAME,
            location: location.clone(),
            reason,
        };
        let mut cfg = deadpool_postgres::Config::new();
        cfg.url = Some(url.to_owned());
        cfg.pool = Some(deadpool_postgres::PoolConfig {
            max_size: max_connections.max(1),
            timeouts: deadpool_postgres::Timeouts {
                wait: Some(Duration::from_secs(30)),
                create: Some(Duration::from_secs(10)),
                recycle: Some(Duration::from_secs(10)),
            },
            ..Default::default()
        });
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1), NoTls)
            .map_err(|e| open_err(chain(&e)))?;
        let mut client = pool.get().await.map_err(|e| open_err(chain(&e)))?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| open_err(chain(&e)))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(|e| open_err(chain(&e)))?;
        let schema_err =
            |e: tokio_postgres::Error| open_err(format!("creating the schema: {}", chain(&e)));
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS overmind_state (
                 kind TEXT NOT NULL,
                 id TEXT NOT NULL,
                 version BIGINT NOT NULL,
                 data BYTEA NOT NULL,
                 PRIMARY KEY (kind, id)
             );
             CREATE SEQUENCE IF NOT EXISTS overmind_state_version;
             CREATE TABLE IF NOT EXISTS overmind_epoch_floor (
                 cluster TEXT PRIMARY KEY,
                 epoch BIGINT NOT NULL CHECK (epoch >= 0)
             );",
        )
        .await
        .map_err(schema_err)?;
        // Looked up first: `CREATE INDEX IF NOT EXISTS` takes a SHARE lock on the table (which
        // holds off every save) even when the index exists, and this runs on every connect.
        let has_list_index: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid = 'overmind_state'::regclass AND c.relname = 'overmind_state_list')",
                &[],
            )
            .await
            .map_err(schema_err)?
            .try_get(0)
            .map_err(schema_err)?;
        if !has_list_index {
            tx.batch_execute(
                r#"CREATE INDEX IF NOT EXISTS overmind_state_list
                   ON overmind_state (kind, id COLLATE "C")"#,
            )
            .await
            .map_err(schema_err)?;
        }
        tx.commit().await.map_err(|e| open_err(chain(&e)))?;
        Ok(Self { pool, location })
    }

    async fn current(&self, key: &ActorKey) -> Result<Version, StoreError> {
        let client = self.pool.get().await.map_err(backend)?;
        let stmt = client
            .prepare_cached("SELECT version FROM overmind_state WHERE kind = $1 AND id = $2")
            .await
            .map_err(backend)?;
        let row = client
            .query_opt(&stmt, &[&key.kind(), &key.id()])
            .await
            .map_err(backend)?;
        row.map_or(Ok(Version::ABSENT), |r| version_of(&r))
    }

    async fn conflict(&self, key: &ActorKey, expected: Version) -> StoreError {
        match self.current(key).await {
            Ok(actual) => StoreError::Conflict {
                key: key.clone(),
                expected,
                actual,
            },
            Err(e) => e,
        }
    }
}

impl StateStore for PostgresStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn load<'a>(&'a self, key: &'a ActorKey) -> BoxFuture<'a, Result<Option<Stored>, StoreError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(backend)?;
            let stmt = client
                .prepare_cached(
                    "SELECT version, data FROM overmind_state WHERE kind = $1 AND id = $2",
                )
                .await
                .map_err(backend)?;
            let row = client
                .query_opt(&stmt, &[&key.kind(), &key.id()])
                .await
                .map_err(backend)?;
            row.map(|r| {
                Ok(Stored {
                    version: version_of(&r)?,
                    bytes: column(&r, 1)?,
                })
            })
            .transpose()
        })
    }

    fn save<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<Version, StoreError>> {
        Box::pin(async move {
            let Some(expected_column) = as_column(expected) else {
                return Err(self.conflict(key, expected).await);
            };
            let client = self.pool.get().await.map_err(backend)?;
            let row = if expected.is_absent() {
                let stmt = client
                    .prepare_cached(
                        "INSERT INTO overmind_state (kind, id, version, data)
                         VALUES ($1, $2, nextval('overmind_state_version'), $3)
                         ON CONFLICT (kind, id) DO NOTHING RETURNING version",
                    )
                    .await
                    .map_err(backend)?;
                client
                    .query_opt(&stmt, &[&key.kind(), &key.id(), &bytes])
                    .await
            } else {
                let stmt = client
                    .prepare_cached(
                        "UPDATE overmind_state SET data = $3, version = nextval('overmind_state_version')
                         WHERE kind = $1 AND id = $2 AND version = $4 RETURNING version",
                    )
                    .await
                    .map_err(backend)?;
                client
                    .query_opt(&stmt, &[&key.kind(), &key.id(), &bytes, &expected_column])
                    .await
            }
            .map_err(backend)?;
            drop(client);
            match row {
                Some(r) => version_of(&r),
                None => Err(self.conflict(key, expected).await),
            }
        })
    }

    fn delete<'a>(
        &'a self,
        key: &'a ActorKey,
        expected: Version,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let Some(expected_column) = as_column(expected) else {
                return Err(self.conflict(key, expected).await);
            };
            let client = self.pool.get().await.map_err(backend)?;
            let stmt = client
                .prepare_cached(
                    "DELETE FROM overmind_state WHERE kind = $1 AND id = $2 AND version = $3",
                )
                .await
                .map_err(backend)?;
            let deleted = client
                .execute(&stmt, &[&key.kind(), &key.id(), &expected_column])
                .await
                .map_err(backend)?;
            drop(client);
            if deleted == 1 {
                return Ok(());
            }
            match self.current(key).await? {
                actual if actual == expected => Ok(()), // absent, as expected
                actual => Err(StoreError::Conflict {
                    key: key.clone(),
                    expected,
                    actual,
                }),
            }
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // Every save is committed before it returns.
        Box::pin(async { Ok(()) })
    }

    fn close(&self) {
        self.pool.close();
    }

    fn epoch_floor<'a>(&'a self, cluster: &'a str) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let client = self.pool.get().await.map_err(backend)?;
            let stmt = client
                .prepare_cached("SELECT epoch FROM overmind_epoch_floor WHERE cluster = $1")
                .await
                .map_err(backend)?;
            let row = client
                .query_opt(&stmt, &[&cluster])
                .await
                .map_err(backend)?;
            floor_of(row.map(|r| column(&r, 0)).transpose()?)
        })
    }

    fn raise_epoch_floor<'a>(
        &'a self,
        cluster: &'a str,
        epoch: u64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let wanted = i64::try_from(epoch).map_err(|_| StoreError::OutOfRange {
                store: NAME,
                what: format!("epoch {epoch} (above {})", i64::MAX),
            })?;
            let client = self.pool.get().await.map_err(backend)?;
            // One statement: concurrent raises serialize on the row, and the larger wins.
            let stmt = client
                .prepare_cached(
                    "INSERT INTO overmind_epoch_floor (cluster, epoch) VALUES ($1, $2)
                     ON CONFLICT (cluster) DO UPDATE
                     SET epoch = GREATEST(overmind_epoch_floor.epoch, EXCLUDED.epoch)
                     RETURNING epoch",
                )
                .await
                .map_err(backend)?;
            let row = client
                .query_one(&stmt, &[&cluster, &wanted])
                .await
                .map_err(backend)?;
            floor_of(Some(column(&row, 0)?))
        })
    }

    fn list<'a>(
        &'a self,
        kind: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            // PostgreSQL text cannot hold NUL, and neither can a kind or an id: a kind with one
            // has no entries, and the ids after `p NUL q` are exactly those after `p`.
            if limit == 0 || kind.contains('\0') {
                return Ok(Vec::new());
            }
            // Every id is non-empty, so all of them are after "".
            let after = after.map_or("", |a| a.split('\0').next().unwrap_or_default());
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let client = self.pool.get().await.map_err(backend)?;
            // COLLATE "C": byte order, served by the index `overmind_state_list`.
            let stmt = client
                .prepare_cached(
                    r#"SELECT id FROM overmind_state
                       WHERE kind = $1 AND id COLLATE "C" > $2
                       ORDER BY id COLLATE "C" LIMIT $3"#,
                )
                .await
                .map_err(backend)?;
            let rows = client
                .query(&stmt, &[&kind, &after, &limit])
                .await
                .map_err(backend)?;
            rows.iter().map(|r| column(r, 0)).collect()
        })
    }
}
