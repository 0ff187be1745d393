//! The writer heals the store by itself after a failed write (a full disk, an I/O error).
//!
//! sled 0.34 keeps the first I/O error for good: once a write or flush failed, every later
//! write on that `Db` fails with the same error, even after space is freed (tried on an 8 MiB
//! tmpfs: 576 batches acknowledged, then ENOSPC, then ENOSPC forever; closed and opened again
//! in the same process, all 576 were there and writes worked). And after a failed fsync a later
//! one can succeed without the earlier data being on disk. So from the first failure on, the
//! writer answers every write with [`Error::Unavailable`] (451 / 503), says why through
//! [`super::WriterHandle::unwritable`] (`/readyz`), and tries to heal, every [`RETRY`] and
//! whenever writes arrive: a small file written and synced in the store's directory (cheap, and
//! refused while the disk is full) shows the disk takes writes again; then the store is closed, opened again
//! (sled reads back exactly what is on disk) and written to once, and the counts kept in memory
//! are counted again from the tree.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::journal::{Journal, open_data_file, sync_files};
use super::writer::State;
use super::{Error, outbox};

/// How long after a failed attempt the writer tries to heal again.
pub(super) const RETRY: Duration = Duration::from_secs(1);
/// How long reopening waits for readers to let go of the old handles (sled's file lock).
const REOPEN_WAIT: Duration = Duration::from_secs(2);
/// The probe: big enough that a nearly full disk refuses it, as sled's next segment would.
const PROBE_BYTES: usize = 64 * 1024;
const PROBE_FILE: &str = "siren-probe";
/// The key the probe writes through sled once the store is open again.
const PROBE_KEY: &[u8] = b"~probe";

/// Writes are failing: why, and when to try to heal next.
pub(super) struct Failing {
    pub reason: Arc<str>,
    pub since: Instant,
    pub retry_at: tokio::time::Instant,
}

pub(super) fn panicked() -> Error {
    Error::Io {
        path: "writer".into(),
        source: std::io::Error::other("the store panicked while writing"),
    }
}

impl State {
    /// Records that writes fail: every write is refused from now on until the store heals.
    pub(super) fn enter_failing(&mut self, e: &Error) {
        let reason: Arc<str> = e.to_string().into();
        match &mut self.failing {
            Some(f) => f.reason = reason.clone(),
            None => {
                tracing::error!(error = %e, "store writes are failing; answering 451/503 until it heals");
                self.failing = Some(Failing {
                    reason: reason.clone(),
                    since: Instant::now(),
                    retry_at: tokio::time::Instant::now() + RETRY,
                });
                self.metrics.set_store_writable(false);
            }
        }
        *self.unwritable.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// [`State::heal`] on the blocking pool.
    pub(super) async fn heal_blocking(mut self) -> Self {
        let task = tokio::task::spawn_blocking(move || {
            self.heal();
            self
        });
        // `heal` catches panics, so the task always hands the state back.
        task.await.expect("healing the store hands its state back")
    }

    /// One attempt to make the store writable again; on failure the next is due in [`RETRY`].
    fn heal(&mut self) {
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.try_heal()));
        match attempt.unwrap_or_else(|_| {
            Err(Error::Unavailable(
                "the store panicked while reopening".into(),
            ))
        }) {
            Ok(()) => {
                let since = self.failing.take().map(|f| f.since.elapsed());
                *self.unwritable.lock().unwrap_or_else(|e| e.into_inner()) = None;
                self.metrics.set_store_writable(true);
                // Deadlines may differ from what was last reported: let the resolver ask again.
                self.reported_deadline = None;
                self.deadline_moved.notify_one();
                tracing::warn!(after = ?since.unwrap_or_default(), "store writable again");
            }
            Err(e) => {
                tracing::debug!(error = %e, "store still not writable");
                if let Some(f) = &mut self.failing {
                    f.reason = e.to_string().into();
                    f.retry_at = tokio::time::Instant::now() + RETRY;
                }
                *self.unwritable.lock().unwrap_or_else(|e| e.into_inner()) =
                    self.failing.as_ref().map(|f| f.reason.clone());
            }
        }
    }

    fn try_heal(&mut self) -> Result<(), Error> {
        if self.fault.load(Ordering::SeqCst) {
            return Err(Error::Injected);
        }
        self.probe_file()?;
        // The disk takes writes: open sled again (its old handles refuse every write).
        self.reopen_store()?;
        let handles = self.store.handles()?;
        handles.tree.insert(PROBE_KEY, &[][..])?;
        sync_files(&handles.db, &self.data_file, &self.store.path.join("db"))?;
        self.counts = super::index::counts(&handles.tree)?;
        self.outbox_depth = handles.tree.scan_prefix([outbox::PENDING]).count() as u64;
        self.metrics.set_outbox_depth(self.outbox_depth);
        Ok(())
    }

    /// Closes sled and opens it again (which replays the journal into it and makes sled write
    /// its snapshot), then starts the journal afresh. Also the planned reopen's (`reopen.rs`).
    /// Nothing may be in flight: every group applied is synced and answered.
    /// Returns how long sled's own open took (the rest is waiting for readers to let go).
    pub(super) fn reopen_store(&mut self) -> Result<Duration, Error> {
        self.store.close();
        let started = Instant::now();
        let open = loop {
            let attempt = Instant::now();
            match self.store.reopen() {
                Ok(()) => break attempt.elapsed(),
                // Readers may still hold the old handles, and with them sled's file lock.
                Err(_) if started.elapsed() < REOPEN_WAIT => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => return Err(e),
            }
        };
        self.data_file = Arc::new(open_data_file(&self.store)?);
        let handles = self.store.handles()?;
        // The reopen replayed the journal into sled and flushed it: the journal starts afresh
        // (Journal::open syncs sled's files before it empties its own).
        let journal = Journal::open(
            &self.store.path,
            &handles.db,
            &handles.tree,
            &self.data_file,
        )?;
        self.next_seq = journal.next_seq();
        self.journal = Arc::new(std::sync::Mutex::new(journal));
        self.since_open = 0;
        Ok(open)
    }

    /// Writes, syncs and removes a small file beside sled's.
    fn probe_file(&self) -> Result<(), Error> {
        let path = self.store.path.join(PROBE_FILE);
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let written = std::fs::File::create(&path).and_then(|mut f| {
            f.write_all(&[0; PROBE_BYTES])?;
            f.sync_data()
        });
        let removed = std::fs::remove_file(&path);
        written.map_err(io)?;
        removed.map_err(io)
    }
}
