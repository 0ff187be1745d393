//! The writer's jobs: what each write asks of the store (`Request`), what it came to
//! (`Answer`), and where its caller waits for it (`Reply`), kept apart so that every caller can
//! be answered whatever happens to the request.

use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use super::alerts::UserChange;
use super::packed::Prepacked;
use super::silences::{self, SilenceOp};
use super::writer::{DeliveryOutcome, Receipt};
use super::{Alert, Error, NewLog};

/// What a write asks of the store.
pub(super) enum Request {
    /// Log entries, and their values as the submitter packed them (one per entry; empty when
    /// the writer packs them).
    Ingest(Vec<NewLog>, Vec<Prepacked>),
    Change {
        id: u64,
        change: UserChange,
        now: SystemTime,
    },
    AutoResolve {
        now: SystemTime,
    },
    Delivery {
        id: u64,
        outcome: DeliveryOutcome,
    },
    Silence(SilenceOp),
    /// A user's retry of a dead letter: its id, and now (`apply::retry`).
    Retry(u64, SystemTime),
}

/// What a request came to once applied; its caller hears it after the group's sync.
pub(super) enum Answer {
    Ingest(Vec<Receipt>),
    Change(Box<Alert>),
    /// The next auto-resolve deadline (ms).
    AutoResolve(Option<u64>),
    /// Whether the delivery left the outbox (delivered or dead).
    Delivery(bool),
    Silence(Option<Box<silences::Record>>),
}

/// Where a request's caller waits.
pub(super) enum Reply {
    Ingest(oneshot::Sender<Result<Vec<Receipt>, Error>>),
    Change(oneshot::Sender<Result<Alert, Error>>),
    AutoResolve(oneshot::Sender<Result<Option<SystemTime>, Error>>),
    Delivery(oneshot::Sender<Result<(), Error>>),
    Silence(oneshot::Sender<Result<Option<Box<silences::Record>>, Error>>),
}

impl Reply {
    pub(super) fn send(self, result: Result<Answer, Error>) {
        let mismatch = || Error::Io {
            path: "writer".into(),
            source: std::io::Error::other("answer of the wrong kind"),
        };
        match (self, result) {
            (Reply::Ingest(tx), Ok(Answer::Ingest(r))) => drop(tx.send(Ok(r))),
            (Reply::Change(tx), Ok(Answer::Change(a))) => drop(tx.send(Ok(*a))),
            (Reply::AutoResolve(tx), Ok(Answer::AutoResolve(next))) => {
                drop(tx.send(Ok(next.map(ms_time))))
            }
            (Reply::Delivery(tx), Ok(Answer::Delivery(_))) => drop(tx.send(Ok(()))),
            (Reply::Silence(tx), Ok(Answer::Silence(s))) => drop(tx.send(Ok(s))),
            (reply, Err(e)) => reply.fail(e),
            (reply, Ok(_)) => reply.fail(mismatch()),
        }
    }

    pub(super) fn fail(self, e: Error) {
        match self {
            Reply::Ingest(tx) => drop(tx.send(Err(e))),
            Reply::Change(tx) => drop(tx.send(Err(e))),
            Reply::AutoResolve(tx) => drop(tx.send(Err(e))),
            Reply::Delivery(tx) => drop(tx.send(Err(e))),
            Reply::Silence(tx) => drop(tx.send(Err(e))),
        }
    }
}

/// An age-prune request: its time, and where its caller waits.
pub(super) type Prune = (
    SystemTime,
    oneshot::Sender<Result<Option<SystemTime>, Error>>,
);

pub(super) enum Job {
    Write(Request, Reply),
    Prune {
        now: SystemTime,
        reply: oneshot::Sender<Result<Option<SystemTime>, Error>>,
    },
    /// Commit what was queued before this, flush, and end the writer.
    Shutdown,
}

fn ms_time(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}
