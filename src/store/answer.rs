//! Answering a durable group commit, in two parts: its callers, the metrics and the delivery
//! workers ([`Answerer::answer`]), then what the writer's state keeps of it
//! ([`State::settle`]: the outbox depth, the deadline last reported to the resolver).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::jobs::{Answer, Reply};
use super::outbox::Queued;
use super::writer::{Applied, State};
use crate::metrics::Metrics;

/// What answering a durable group needs.
pub(super) struct Answerer {
    metrics: Arc<Metrics>,
    feed: Option<mpsc::UnboundedSender<Vec<(String, Queued)>>>,
}

/// What a durable group leaves for the writer's state once it is answered.
pub(super) struct Settled {
    earliest: Option<u64>,
    queued: u64,
    left: u64,
    /// The next deadlines auto resolve answered, in order.
    next_deadlines: Vec<Option<u64>>,
}

impl Answerer {
    /// Answers every caller of a group whose sync returned, counts it, and hands its new
    /// deliveries to the workers.
    pub fn answer(&self, applied: Applied, replies: Vec<Reply>) -> Settled {
        let requests = replies.len();
        let elapsed = applied.started.elapsed();
        self.metrics.commit(elapsed, requests);
        self.metrics.alert_changes(&applied.changes);
        tracing::trace!(requests, ?elapsed, "group commit");
        let left = applied
            .results
            .iter()
            .filter(|r| matches!(r, Ok(Answer::Delivery(true))))
            .count() as u64;
        let queued = applied.queued;
        let added = queued.len() as u64;
        if let Some(feed) = &self.feed
            && !queued.is_empty()
        {
            let _ = feed.send(queued);
        }
        let mut next_deadlines = Vec::new();
        for (reply, result) in replies.into_iter().zip(applied.results) {
            if let Ok(Answer::AutoResolve(next)) = &result {
                next_deadlines.push(*next);
            }
            reply.send(result);
        }
        Settled {
            earliest: applied.earliest,
            queued: added,
            left,
            next_deadlines,
        }
    }
}

impl State {
    pub(super) fn answerer(&self) -> Answerer {
        Answerer {
            metrics: self.metrics.clone(),
            feed: self.outbox.as_ref().map(|o| o.queued.clone()),
        }
    }

    /// Keeps what an answered group changed: the outbox depth, and the earliest deadline the
    /// resolver knows of (woken when the group added an earlier one).
    pub(super) fn settle(&mut self, s: Settled) {
        if let Some(ms) = s.earliest
            && self.reported_deadline.is_none_or(|r| ms < r)
        {
            self.reported_deadline = Some(ms);
            self.deadline_moved.notify_one();
        }
        if s.queued > 0 || s.left > 0 {
            self.outbox_depth = (self.outbox_depth + s.queued).saturating_sub(s.left);
            self.metrics.set_outbox_depth(self.outbox_depth);
        }
        for next in s.next_deadlines {
            self.reported_deadline = next;
        }
    }
}
