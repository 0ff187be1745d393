//! Stage 7: the auto-resolve timer. It asks the writer to resolve what is due, then sleeps
//! until the next deadline (persisted in the store), waking early only when a commit adds an
//! earlier one. Nothing runs while nothing is due; an overdue alert is resolved right at start.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::store::{Error, WriterHandle};

/// How long to wait before retrying after the store failed.
const RETRY: Duration = Duration::from_secs(5);

pub async fn run(writer: WriterHandle, stop: CancellationToken) {
    loop {
        let wait = match writer.auto_resolve(clock::now()).await {
            Ok(Some(next)) => Some(next.duration_since(clock::now()).unwrap_or(Duration::ZERO)),
            Ok(None) => None,
            Err(Error::Stopped) => return,
            Err(e) => {
                tracing::error!(error = %e, "auto-resolve failed; retrying");
                Some(RETRY)
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = writer.deadline_moved() => {}
            _ = async { tokio::time::sleep(wait.unwrap_or_default()).await }, if wait.is_some() => {}
        }
    }
}
