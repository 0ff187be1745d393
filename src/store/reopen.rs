//! Planned reopens, which bound the next start-up. sled 0.34 writes its snapshot only when it
//! opens a store (`pagecache/snapshot.rs`: `write_snapshot` is called from recovery alone), so
//! a process that keeps a store open replays, at its next start, every log segment written since
//! it opened it: 9.2 s after 1,000,000 alerts. The writer therefore closes and opens the store
//! again by itself once the journal has taken more than [`Bounds::idle`] bytes since the store
//! was opened, as soon as no write has arrived for [`Bounds::idle_wait`], and at once past
//! [`Bounds::hard`] (a sustained storm). The next start then replays at most that much.
//!
//! The reopen is the healing one (`heal.rs`, [`State::reopen_store`]) with nothing in flight:
//! every group applied was synced and answered, sled is opened again (replaying the journal,
//! which holds every record since the last checkpoint, so a crash at any point in it loses
//! nothing) and the journal starts afresh. Writes queue meanwhile; readers wait for it
//! (at most [`READER_WAIT`]) instead of failing.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::writer::State;

/// How long a reader waits for a planned reopen before it answers "unavailable".
pub(super) const READER_WAIT: Duration = Duration::from_secs(10);

/// When the writer reopens the store, in journal payload bytes since it was opened.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Reopen once the writer has been idle for `idle_wait`, past this many bytes.
    pub idle: u64,
    /// Reopen before the next group, idle or not, past this many bytes.
    pub hard: u64,
    pub idle_wait: Duration,
}

impl Default for Bounds {
    /// At the next start sled replays about 3.7 ms per MiB of journal payload written since the
    /// store was opened (measured: bench/profile.md, "Start-up"), on top of reading its snapshot
    /// (0.8 s with 1,000,000 alerts): 32 MiB idle cost 0.15 s more, 128 MiB under a storm 0.6 s.
    fn default() -> Self {
        Bounds {
            idle: 32 << 20,
            hard: 128 << 20,
            idle_wait: Duration::from_millis(500),
        }
    }
}

/// Whether a planned reopen is running; readers wait on it.
#[derive(Default)]
pub(super) struct Gate {
    planned: Mutex<bool>,
    done: Condvar,
}

impl Gate {
    pub(super) fn set(&self, on: bool) {
        *self.planned.lock().unwrap_or_else(|e| e.into_inner()) = on;
        if !on {
            self.done.notify_all();
        }
    }

    /// Returns once no planned reopen runs, or after [`READER_WAIT`].
    pub(super) fn wait(&self) {
        let planned = self.planned.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self
            .done
            .wait_timeout_while(planned, READER_WAIT, |on| *on)
            .unwrap_or_else(|e| e.into_inner());
    }
}

impl State {
    /// True when a planned reopen is due: past the hard bound, or (`idle`) past the idle one.
    pub(super) fn reopen_due(&self, idle: bool) -> bool {
        let bound = if idle {
            self.bounds.idle
        } else {
            self.bounds.hard
        };
        self.failing.is_none() && self.since_open > bound
    }

    /// Reopens the store on the blocking pool (nothing may be in flight). A failure leaves the
    /// store closed and the writer healing it, as after a failed write.
    pub(super) async fn reopen_blocking(mut self) -> Self {
        let task = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let bytes = self.since_open;
            self.store.planned.set(true);
            let reopened =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.reopen_store()));
            self.store.planned.set(false);
            match reopened {
                Ok(Ok(open)) => {
                    tracing::info!(journal_bytes = bytes, took = ?started.elapsed(), open = ?open,
                        "store reopened so that sled writes its snapshot");
                }
                Ok(Err(e)) => self.enter_failing(&e),
                Err(_) => self.enter_failing(&super::Error::Unavailable(
                    "the store panicked while reopening".into(),
                )),
            }
            self
        });
        task.await
            .expect("reopening the store hands its state back")
    }
}
