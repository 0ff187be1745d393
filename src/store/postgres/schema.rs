//! The schema, created and migrated by Siren at start: numbered migrations embedded in the
//! binary, each applied once in a transaction of its own, under an advisory lock so that nodes
//! starting together do not race. A database whose schema is newer than this binary knows is
//! refused: an older node must not write to tables whose meaning it does not know.

use deadpool_postgres::Pool;

use super::{Error, db_error, pool_error};

/// Every migration, in order; the schema's version is the number of the last one applied.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("migrations/0001_init.sql"))];

/// The advisory lock key nodes take while migrating ("siren-mg").
const MIGRATE_LOCK: i64 = 0x7369_7265_6e2d_6d67;

/// The schema version this binary writes.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Brings the database to [`latest`], or refuses it when it is newer.
pub(super) async fn migrate(pool: &Pool) -> Result<(), Error> {
    let mut client = pool.get().await.map_err(pool_error)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(|e| db_error(&e))?;
    let result = apply(&mut client).await;
    // Unlock even after a failure: the connection goes back to the pool.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK])
        .await
        .map_err(|e| db_error(&e));
    result.and(unlocked.map(drop))
}

async fn apply(client: &mut deadpool_postgres::Object) -> Result<(), Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS siren_schema (
                 version    integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(|e| db_error(&e))?;
    let row = client
        .query_one("SELECT coalesce(max(version), 0) FROM siren_schema", &[])
        .await
        .map_err(|e| db_error(&e))?;
    let current: i32 = row.get(0);
    if current > latest() {
        return Err(Error::Postgres(format!(
            "the database schema is version {current}, newer than this Siren knows (up to {}); \
             run a Siren at least as new as the one that migrated it",
            latest()
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = client.transaction().await.map_err(|e| db_error(&e))?;
        tx.batch_execute(sql).await.map_err(|e| {
            let Error::Postgres(m) = db_error(&e) else {
                unreachable!()
            };
            Error::Postgres(format!("schema migration {version} failed: {m}"))
        })?;
        tx.execute("INSERT INTO siren_schema (version) VALUES ($1)", &[version])
            .await
            .map_err(|e| db_error(&e))?;
        tx.commit().await.map_err(|e| db_error(&e))?;
        tracing::info!(version, "database schema migrated");
    }
    Ok(())
}
