//! One chain of group commits on the writer's blocking thread (`writer.rs` runs it): each
//! group is applied, its journal record made durable, its callers answered, and its writes
//! handed on to sled while the next group's record is made durable. The wait for the disk and
//! sled's CPU overlap instead of following each other: the journal's write runs on a thread
//! of its own ([`Appender`]) while the writer's thread writes the group before to sled, and
//! the next group reads the tree with those writes laid over it (`view.rs`) until they are in.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::heal::panicked;
use super::jobs::{Prune, Reply, Request};
use super::journal::Journal;
use super::view::Overlay;
use super::writer::{Applied, Collected, State};
use super::{Error, Handles};

/// A group answered whose writes sled does not hold yet: the store's gate stays closed to
/// readers until they are in.
pub(super) struct Unwritten<'h> {
    gate: std::sync::RwLockWriteGuard<'h, ()>,
    writes: super::writes::Writes,
}

impl State {
    /// Commits one group's requests, answers their replies, and runs its prunes. `last` is the
    /// group before, answered and not yet in sled; what comes back is this one, likewise
    /// (`None` once sled holds every group answered).
    pub(super) fn commit_collected<'h>(
        &mut self,
        handles: &'h Handles,
        group: Collected,
        last: Option<Unwritten<'h>>,
    ) -> Option<Unwritten<'h>> {
        let mut last = last;
        if !group.requests.is_empty() {
            last = self.commit_group(handles, &group.requests, group.replies, last);
        }
        if !group.prunes.is_empty() {
            self.write_last(handles, last.take(), true);
            self.run_prunes(group.prunes);
        }
        last
    }

    pub(super) fn run_prunes(&mut self, prunes: Vec<Prune>) {
        for (now, reply) in prunes {
            let next =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.prune_by_age(now)))
                    .unwrap_or_else(|_| Err(panicked()));
            if let Err(e) = &next {
                tracing::error!(error = %e, "pruning old log entries failed");
                if e.is_store_failure() {
                    self.enter_failing(e);
                }
            }
            let _ = reply.send(next);
        }
    }

    /// Applies a group, appends its record to the journal (one durable `pwrite`) and answers
    /// its callers; its writes go to sled after that, while the next group's record is made
    /// durable, or at once when no group follows (the caller's [`State::write_last`]).
    ///
    /// With `last` (the group before, answered, not in sled yet), this group is applied
    /// reading the tree with `last`'s writes laid over it; its record is handed to the
    /// journal's thread ([`Appender`]), `last`'s writes go to sled meanwhile on this thread,
    /// and this group is answered once both are done. The callers are answered once the
    /// record is durable, before sled holds the group: from the answer until sled does, the
    /// writer holds the store's gate, which every read passes ([`super::SledStore::handles`]), so a
    /// caller that reads after its answer sees its group whole. A failure to write sled after
    /// the sync leaves a durable record, answered as such, that the healing reopen replays
    /// (ARCHITECTURE.md, "Durability details").
    fn commit_group<'h>(
        &mut self,
        handles: &'h Handles,
        requests: &[Request],
        replies: Vec<Reply>,
        last: Option<Unwritten<'h>>,
    ) -> Option<Unwritten<'h>> {
        let started = Instant::now();
        let overlay = last.as_ref().map(|l| Overlay::of(&l.writes));
        let mut applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.apply_group(handles, overlay.as_ref(), requests)
        }))
        .unwrap_or_else(|_| Applied::failed(started, panicked()));
        if applied.failed.is_some() {
            self.write_last(handles, last, true);
            self.finish(applied, replies);
            return None;
        }
        let writes = std::mem::take(&mut applied.writes);
        let payload = std::mem::take(&mut applied.journal);
        let payload_len = payload.len() as u64;
        let journal = self.journal.clone();
        let appended = match last {
            Some(last) => match self
                .appender()
                .map(|a| a.start(journal, applied.seq, payload))
            {
                Ok(()) => {
                    self.write_last(handles, Some(last), false);
                    self.appender.as_ref().expect("started").wait()
                }
                Err(e) => {
                    self.write_last(handles, Some(last), true);
                    Err(e)
                }
            },
            None => {
                let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    journal.append(applied.seq, &payload)
                }))
                .unwrap_or_else(|_| Err(panicked()))
            }
        };
        if let Err(e) = appended {
            applied.failed = Some(e);
            self.finish(applied, replies);
            return None;
        }
        let gate = handles.gate.write().unwrap_or_else(|e| e.into_inner());
        self.since_open += payload_len;
        self.finish(applied, replies);
        let this = Unwritten { gate, writes };
        let full = self
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .wants_retire();
        if self.failing.is_some() {
            // The healing reopen replays the record; sled is not written while it fails.
            return None;
        }
        if full {
            // The journal moves to its other file only once sled holds every record.
            self.write_last(handles, Some(this), true);
            return None;
        }
        Some(this)
    }

    /// Writes `last` (an answered group) to sled and opens the gate; with `retire`, when no
    /// later record has been appended, lets the journal retire a full file (its checkpoint
    /// covers every record in it, these writes included).
    pub(super) fn write_last(
        &mut self,
        handles: &Handles,
        last: Option<Unwritten<'_>>,
        retire: bool,
    ) {
        let Some(last) = last else { return };
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            last.writes.write_to(handles)
        }))
        .unwrap_or_else(|_| Err(panicked()));
        drop(last.gate);
        match written {
            Ok(()) if retire => self
                .journal
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retire_if_full(&handles.db, &self.data_file),
            Ok(()) => {}
            Err(e) => {
                tracing::error!(error = %e, "writing a durable group to sled failed; the store heals and replays it from the journal");
                self.enter_failing(&e);
            }
        }
    }

    /// The journal's thread, started on first use.
    fn appender(&mut self) -> Result<&Appender, Error> {
        if self.appender.is_none() {
            self.appender = Some(Appender::spawn()?);
        }
        Ok(self.appender.as_ref().expect("just started"))
    }
}

/// The writer's second thread: it makes one group's journal record durable (one direct
/// `pwrite`, `journal.rs`) while the writer's own thread writes the group before to sled. It
/// only ever holds one record: the writer hands it one and waits for it before the next.
type Record = (Arc<Mutex<Journal>>, u64, Vec<u8>);

pub(super) struct Appender {
    records: Sender<Record>,
    appended: Receiver<Result<(), Error>>,
}

impl Appender {
    /// Starts the thread; it ends when the appender is dropped.
    pub fn spawn() -> Result<Self, Error> {
        let (records, rx) = channel::<Record>();
        let (tx, appended) = channel();
        std::thread::Builder::new()
            .name("siren-journal".into())
            .spawn(move || {
                for (journal, seq, payload) in rx {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
                        journal.append(seq, &payload)
                    }))
                    .unwrap_or_else(|_| Err(panicked()));
                    if tx.send(result).is_err() {
                        break;
                    }
                }
            })
            .map_err(|source| Error::Io {
                path: "journal thread".into(),
                source,
            })?;
        Ok(Self { records, appended })
    }

    /// Hands the thread record `seq` to append; [`Appender::wait`] returns how that went.
    pub fn start(&self, journal: Arc<Mutex<Journal>>, seq: u64, payload: Vec<u8>) {
        // A thread that is gone shows as a failed append in `wait`.
        let _ = self.records.send((journal, seq, payload));
    }

    /// Waits for the record handed over last: durable, or why not.
    pub fn wait(&self) -> Result<(), Error> {
        self.appended.recv().unwrap_or_else(|_| Err(panicked()))
    }
}
