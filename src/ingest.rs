//! What one accepted input does, from parsed data to the durable commit: the seam between the
//! protocol front ends (SMTP, HTTP) and the pipeline stages behind them.

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;
use crate::email::{self, Envelope};
use crate::route::Route;
use crate::store::{self, NewLog, Source, WriterHandle};

/// Messages larger than this are parsed on the blocking pool, off the session's worker.
const PARSE_INLINE_MAX: usize = 64 * 1024;

/// Parses one message once and logs it for each integration it was routed to (each once),
/// returning only after everything is durable. Returns the log ids, in route order.
pub async fn email(
    config: &Config,
    writer: &WriterHandle,
    envelope: Envelope,
    raw: Vec<u8>,
    routes: &[Route],
    received_at: SystemTime,
) -> Result<Vec<u64>, store::Error> {
    let remote_addr = envelope.client_addr.clone();
    let raw: Arc<[u8]> = raw.into();
    let data = if raw.len() <= PARSE_INLINE_MAX {
        email::parse(&raw, envelope)
    } else {
        let raw = raw.clone();
        tokio::task::spawn_blocking(move || email::parse(&raw, envelope))
            .await
            .map_err(|_| store::Error::Stopped)?
    };
    let logs = routes
        .iter()
        .map(|route| {
            let mut data = data.clone();
            data.tag = route.tag.clone();
            NewLog {
                integration: config.integrations[route.integration].id.clone(),
                received_at,
                source: Source::Smtp,
                remote_addr: remote_addr.clone(),
                data: serde_json::to_value(&data).unwrap_or_default(),
                outcome: None,
                alert_id: None,
                error: data.parse_error.clone(),
                raw: raw.clone(),
            }
        })
        .collect();
    writer.commit(logs).await
}
