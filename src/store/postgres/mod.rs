//! The PostgreSQL store: several Siren nodes on one database. [`PgStore`] is the connection
//! pool and the node's identity; reads ([`reads`]) and the writer ([`writer`]) run their queries
//! on a runtime of their own, so that the store's synchronous read API can block on them from
//! any thread (a blocking-pool thread, or a delivery worker) without starving the daemon's.
//!
//! Only `src/store/` knows this module: the pipeline keeps using [`super::Store`] and
//! [`super::WriterHandle`].

mod background;
mod group;
mod reads;
mod rows;
mod schema;
mod txn;
mod views;
mod writer;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::Error;
use crate::config::PostgresConfig;

pub(super) use writer::spawn as spawn_writer;

/// How long a request waits for a pooled connection, or for a new one to be made, before it
/// fails (and the sender gets 451/503).
const POOL_WAIT: Duration = Duration::from_secs(5);

/// The opened database: cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// This process's name in delivery claims.
    node: Arc<str>,
}

/// The runtime every PostgreSQL query runs on. Never dropped: dropping a runtime from inside
/// another one's task panics, and clones of the store live until the process ends.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("siren-pg")
            .enable_all()
            .build()
            .expect("cannot start the PostgreSQL runtime")
    })
}

/// Runs `fut` on the PostgreSQL runtime and waits for it, blocking this thread.
fn block<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .expect("the PostgreSQL runtime ended a query without an answer")
}

/// Waits for `fut` on this thread, the PostgreSQL runtime driving its I/O: what a group commit
/// does for each statement (it runs on a blocking thread, never on a runtime's own).
fn wait<F: Future>(fut: F) -> F::Output {
    runtime().block_on(fut)
}

/// A database error as the store reports it: the server's message and code when it sent one.
pub(super) fn db_error(e: &tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::Postgres(format!("{} ({})", db.message(), db.code().code())),
        None => match std::error::Error::source(e) {
            Some(cause) => Error::Postgres(format!("{e}: {cause}")),
            None => Error::Postgres(e.to_string()),
        },
    }
}

pub(super) fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_error(&e),
        e => Error::Postgres(format!("no database connection: {e}")),
    }
}

impl PgStore {
    /// Connects, creates or migrates the schema, and checks that the server commits durably.
    /// Blocking: call it from the blocking pool (or outside any runtime).
    pub fn open(config: &PostgresConfig) -> Result<Self, Error> {
        let mut pg: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e| Error::Postgres(format!("store.url: {e}")))?;
        // 250/202 only after the commit is durable: synchronous_commit on for every session,
        // whatever the server's or the role's default is.
        let options = match pg.get_options() {
            Some(o) => format!("{o} -c synchronous_commit=on"),
            None => "-c synchronous_commit=on".to_string(),
        };
        pg.options(options);
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(POOL_WAIT);
        }
        if pg.get_application_name().is_none() {
            pg.application_name("siren");
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| Error::Postgres(format!("cannot make the connection pool: {e}")))?;
        let store = PgStore {
            pool,
            node: Arc::from(uuid::Uuid::new_v4().to_string()),
        };
        let p = store.pool.clone();
        block(async move { schema::migrate(&p).await })?;
        Ok(store)
    }

    /// A pooled connection (on the PostgreSQL runtime).
    async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(pool_error)
    }
}
