//! Integration logs in the store (spec step 9): one entry per event an input made, its data,
//! and the raw input, which is stored once however many entries one input makes (an
//! Alertmanager notification of N alerts is N entries and one raw body).
//!
//! | key                                     | value                                          |
//! |-----------------------------------------|------------------------------------------------|
//! | `L` log id, chunk                       | the entry's summary (what a list shows) and its data when small (`packed.rs`); for an input of one entry, its raw input too when that is small as stored |
//! | `V` log id, chunk                       | the entry's data when larger, or what rebuilds it |
//! | `B` raw id, chunk                       | the raw input, zstd-compressed, when not in `L`; the raw id is its first entry's id |
//! | `R` raw id, chunk                       | the raw input as received, when small or compressing it gains nothing |
//! | `C` raw id                              | entries sharing that raw input (u64 BE), when more than one |
//!
//! Each entry is also in its integration's `I` index (`index.rs`), which the writer puts once
//! per group for all of an integration's entries.
//!
//! A list reads only `L` and parses only its head (no data parsed, no e-mail rebuilt); one
//! entry's detail reads all. An entry's data is compressed with its raw input as the
//! dictionary: most of it is that input again. Entries written before this layout have a JSON
//! `L` (with their data inside it, or under `V` as JSON), their raw input under `R`, and an
//! 8-byte `I` value; they read as before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::alerts::{Outcome, put_chunks};
use super::entry_data::{EmailSource, StoredData, data_bytes, stored_data};
use super::entry_value::{self, Head, RawOwned, RawValue};
use super::index::{self, Indexed, Unindex};
use super::packed::{self, Dictionary};
use super::view::Read;
use super::writes::Writes;
use super::{Error, Page, SledStore, chunk_prefix, read_chunks, rfc3339_ms, u64_at, unix_ms};

pub(super) const LOG: u8 = b'L';
pub(super) const DATA: u8 = b'V';
pub(super) const RAW: u8 = b'R';
pub(super) const PACKED_RAW: u8 = b'B';
pub(super) const RAW_REFS: u8 = b'C';

/// A log entry's summary is cut to this many characters.
const MAX_SUMMARY_CHARS: usize = 200;

/// Where an input came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Smtp,
    Http,
}

/// One integration log entry as a list shows it (spec "Log JSON" without `data`, plus
/// `summary`: the subject or title of the input).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogSummary {
    pub id: String,
    pub integration: String,
    pub received_at: String,
    pub source: Source,
    pub remote_addr: String,
    pub size: u64,
    #[serde(default)]
    pub summary: String,
    pub outcome: Option<Outcome>,
    pub alert_id: Option<String>,
    pub error: Option<String>,
}

/// One integration log entry with its data (spec "Log JSON"), as `GET /api/v1/logs/{id}`
/// serves it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogEntry {
    #[serde(flatten)]
    pub summary: LogSummary,
    pub data: serde_json::Value,
}

/// A log entry to write; the writer assigns its id.
#[derive(Debug, Clone)]
pub struct NewLog {
    pub integration: String,
    pub received_at: SystemTime,
    pub source: Source,
    pub remote_addr: String,
    pub data: serde_json::Value,
    /// The alert change the input asks for; the writer decides the outcome.
    pub alert: Option<super::AlertRequest>,
    /// The outcome when there is no alert request (e.g. `rejected`).
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    /// The input as received. Entries of one commit that share it (the same `Arc`) store it
    /// once.
    pub raw: Arc<[u8]>,
    /// For e-mail: what rebuilds `data` from `raw`, which is then not stored.
    pub email: Option<EmailSource>,
}

/// The JSON summary of entries written before packing: [`LogSummary`] and the id of the raw
/// input, when not the entry's.
#[derive(Deserialize)]
struct OldSummary {
    #[serde(flatten)]
    summary: LogSummary,
    #[serde(default)]
    raw: Option<u64>,
    /// Entries written before `V` existed keep their data here.
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    email: Option<EmailSource>,
}

/// A log entry as read from its `L` value.
pub(super) struct Stored {
    pub summary: LogSummary,
    /// Where its raw input is, when not under the entry's own id.
    pub raw: Option<u64>,
    inline: Inline,
    /// Its raw input, when the `L` value holds it (an input of one small entry): then there is
    /// no `B` or `R` key for it.
    raw_inline: Option<RawOwned>,
}

/// The data an `L` value holds.
enum Inline {
    /// Packed data (`packed.rs`); empty when it is under `V`.
    Packed(Vec<u8>),
    /// An entry from before packing: its data here, or under `V` when neither is set.
    Old {
        data: Option<serde_json::Value>,
        email: Option<Box<EmailSource>>,
    },
}

impl Head {
    fn into_summary(self, id: u64) -> LogSummary {
        LogSummary {
            id: id.to_string(),
            integration: self.integration,
            received_at: rfc3339_ms(self.received_ms),
            source: self.source,
            remote_addr: self.remote_addr,
            size: self.size,
            summary: self.summary,
            outcome: self.outcome,
            alert_id: self.alert_id.map(|a| a.to_string()),
            error: self.error,
        }
    }
}

pub(super) fn corrupt(what: &str, id: u64) -> impl FnOnce(serde_json::Error) -> Error + '_ {
    move |source| Error::Corrupt {
        key: format!("{what} {id}"),
        source,
    }
}

fn refs_key(raw: u64) -> [u8; 9] {
    chunk_prefix(RAW_REFS, raw)
}

impl SledStore {
    /// Log entries of one integration, newest first, starting after `cursor`: summaries only.
    pub fn logs(
        &self,
        integration: &str,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<Page<LogSummary>, Error> {
        let tree = self.tree()?;
        let mut items = Vec::new();
        let mut last = None;
        for entry in index::newest_first(&tree, integration, cursor) {
            let id = entry?.id;
            if items.len() == limit {
                return Ok(Page {
                    items,
                    next: last.map(|l: u64| l.to_string()),
                });
            }
            if let Some(stored) = stored(&tree, id)? {
                items.push(stored.summary);
                last = Some(id);
            }
        }
        Ok(Page { items, next: None })
    }

    /// One log entry, with its data (an e-mail's rebuilt from its raw message).
    pub fn log(&self, id: u64) -> Result<Option<LogEntry>, Error> {
        let tree = self.tree()?;
        let Some(mut stored) = stored(&tree, id)? else {
            return Ok(None);
        };
        let mut raw = RawOf {
            tree: &tree,
            id: stored.raw.unwrap_or(id),
            inline: stored.raw_inline.take(),
            bytes: None,
        };
        let (packed, email, data) = match stored.inline {
            Inline::Packed(bytes) if !bytes.is_empty() => (Some(bytes), None, None),
            Inline::Packed(_) => (read_chunks(&tree, DATA, id)?, None, None),
            Inline::Old { data, email } => (read_chunks(&tree, DATA, id)?, email, data),
        };
        let source = match packed {
            Some(bytes) => {
                let data = packed::unpack(&bytes, || raw.get())?;
                Some(stored_data(&data, &stored.summary.remote_addr, id)?)
            }
            None => None,
        };
        let data = match (source, email, data) {
            (Some(StoredData::Email(email)), _, _) => email.rebuild(raw.get()?),
            (None, Some(email), _) => email.rebuild(raw.get()?),
            (Some(StoredData::Data(data)), _, _) | (None, None, Some(data)) => data,
            (None, None, None) => serde_json::Value::Null,
        };
        Ok(Some(LogEntry {
            summary: stored.summary,
            data,
        }))
    }

    /// The raw input of a log entry, as received.
    pub fn raw(&self, id: u64) -> Result<Option<Vec<u8>>, Error> {
        let tree = self.tree()?;
        let Some(stored) = stored(&tree, id)? else {
            return Ok(None);
        };
        match stored.raw_inline {
            Some(raw) => raw.as_value().bytes().map(Some),
            None => read_raw(&tree, stored.raw.unwrap_or(id)),
        }
    }
}

/// A raw input, read (or unpacked from the entry's `L` value) when first needed.
struct RawOf<'t> {
    tree: &'t sled::Tree,
    id: u64,
    inline: Option<RawOwned>,
    bytes: Option<Vec<u8>>,
}

impl RawOf<'_> {
    fn get(&mut self) -> Result<&[u8], Error> {
        if self.bytes.is_none() {
            self.bytes = Some(match &self.inline {
                Some(raw) => raw.as_value().bytes()?,
                None => read_raw(self.tree, self.id)?.unwrap_or_default(),
            });
        }
        Ok(self.bytes.as_deref().unwrap_or_default())
    }
}

/// The raw input stored under `raw`, as received.
fn read_raw(tree: &impl Read, raw: u64) -> Result<Option<Vec<u8>>, Error> {
    match read_chunks(tree, PACKED_RAW, raw)? {
        Some(bytes) => packed::decompress_raw(&bytes).map(Some),
        None => read_chunks(tree, RAW, raw),
    }
}

/// Log entry `id` as its `L` value holds it: the summary, where the raw input is, and the data
/// when it is there.
pub(super) fn stored(tree: &impl Read, id: u64) -> Result<Option<Stored>, Error> {
    match read_chunks(tree, LOG, id)? {
        Some(bytes) => decode_stored(&bytes, id).map(Some),
        None => Ok(None),
    }
}

/// Entry `id` as [`stored`] reads it, and the keys of its `L` chunks, in one scan: what count
/// retention reads of an entry it removes.
fn stored_and_keys(tree: &impl Read, id: u64) -> Result<(Option<Stored>, Vec<sled::IVec>), Error> {
    if let Some(value) = super::one_chunk(tree, LOG, id)? {
        let key = super::chunk_key(LOG, id, 0);
        return Ok((Some(decode_stored(&value, id)?), vec![key[..].into()]));
    }
    let mut bytes = Vec::new();
    let mut keys = Vec::new();
    for kv in tree.scan_prefix(chunk_prefix(LOG, id)) {
        let (k, v) = kv?;
        bytes.extend_from_slice(&v);
        keys.push(k);
    }
    if keys.is_empty() {
        return Ok((None, keys));
    }
    Ok((Some(decode_stored(&bytes, id)?), keys))
}

/// An `L` value, its chunks put together.
fn decode_stored(bytes: &[u8], id: u64) -> Result<Stored, Error> {
    if let Some(entry) = entry_value::split_entry_raw(bytes) {
        let (head, data, raw) = entry?;
        return Ok(Stored {
            raw: head.raw,
            summary: head.into_summary(id),
            inline: Inline::Packed(data.to_vec()),
            raw_inline: raw.map(RawOwned::from),
        });
    }
    let old: OldSummary = serde_json::from_slice(bytes).map_err(corrupt("log", id))?;
    Ok(Stored {
        summary: old.summary,
        raw: old.raw,
        inline: Inline::Old {
            data: old.data,
            email: old.email.map(Box::new),
        },
        raw_inline: None,
    })
}

/// The subject or title of an input's data, on one line and cut short, for lists.
pub(super) fn summary_of(data: &serde_json::Value) -> String {
    let text = ["subject", "Title", "title"]
        .iter()
        .find_map(|k| data[*k].as_str())
        .unwrap_or("");
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_SUMMARY_CHARS)
        .collect()
}

/// What one log entry is and where it goes: its id, the id its raw input is stored under (its
/// own id when it is the first of its input's entries, which then stores the raw input), and
/// what its data is compressed with (its raw input).
pub(super) struct Placed<'d> {
    pub id: u64,
    pub raw: u64,
    pub data: Data<'d>,
}

/// An entry's data as it goes into the batch: packed already, or to pack with a dictionary.
pub(super) enum Data<'d> {
    Packed(&'d [u8]),
    With(&'d Dictionary),
}

/// Adds one log entry to the batch. `raw_value`: its input's raw bytes as stored, when this
/// entry is the input's only one ([`raw_goes_with`]); they go into its `L` value when its data
/// does too, and under `B` or `R` otherwise.
pub(super) fn put_log(
    writes: &mut Writes,
    at: Placed<'_>,
    log: &NewLog,
    outcome: Option<Outcome>,
    alert_id: Option<u64>,
    raw_value: Option<RawValue<'_>>,
) -> Result<(), Error> {
    let Placed { id, raw, data } = at;
    let head = Head {
        integration: log.integration.clone(),
        received_ms: unix_ms(log.received_at),
        source: log.source,
        remote_addr: log.remote_addr.clone(),
        size: log.raw.len() as u64,
        summary: summary_of(&log.data),
        outcome,
        alert_id,
        error: log.error.clone(),
        raw: (raw != id).then_some(raw),
    };
    let own;
    let data = match data {
        Data::Packed(bytes) => bytes,
        Data::With(dictionary) => {
            own = dictionary.pack(&data_bytes(log)?)?;
            &own[..]
        }
    };
    match raw_value {
        Some(r) if data.len() <= entry_value::INLINE_DATA => {
            put_chunks(
                writes,
                LOG,
                id,
                &entry_value::entry_with_raw(&head, data, r),
            );
        }
        raw_value => {
            if let Some(r) = raw_value {
                put_stored_raw(writes, id, r);
            }
            if data.len() <= entry_value::INLINE_DATA {
                put_chunks(writes, LOG, id, &entry_value::entry(&head, Some(data)));
            } else {
                put_chunks(writes, LOG, id, &entry_value::entry(&head, None));
                put_chunks(writes, DATA, id, data);
            }
        }
    }
    Ok(())
}

/// One input's raw bytes as stored: `compressed`, what [`packed::compress_raw`] made of them,
/// or the bytes themselves when they are small or compressing gains nothing.
pub(super) fn stored_raw<'a>(bytes: &'a [u8], compressed: &'a Option<Vec<u8>>) -> RawValue<'a> {
    match compressed {
        Some(p) => RawValue::Packed(p),
        None => RawValue::Plain(bytes),
    }
}

/// Whether an input's raw bytes as stored go with its entry, into the entry's `L` value, rather
/// than under a key of their own: when the input has one entry and they are small.
pub(super) fn raw_goes_with(entries: u64, raw: RawValue<'_>) -> bool {
    entries == 1 && raw.len() <= entry_value::INLINE_RAW
}

/// Stores one input's raw bytes (as stored) under `raw`, shared by `entries` log entries.
pub(super) fn put_raw(writes: &mut Writes, raw: u64, stored: RawValue<'_>, entries: u64) {
    put_stored_raw(writes, raw, stored);
    if entries > 1 {
        writes.insert(refs_key(raw).to_vec(), entries.to_be_bytes().to_vec());
    }
}

fn put_stored_raw(writes: &mut Writes, raw: u64, stored: RawValue<'_>) {
    match stored {
        RawValue::Packed(p) => put_chunks(writes, PACKED_RAW, raw, p),
        RawValue::Plain(b) => put_chunks(writes, RAW, raw, b),
    }
}

/// Removes log entries within one batch, and each raw input once its last entry is gone.
pub(super) struct Removal<'t, R> {
    tree: &'t R,
    /// Entries left per raw input, as this batch leaves them.
    refs: HashMap<u64, u64>,
    /// Timeline runs this batch changed ([`super::timeline::Changed`]).
    runs: super::timeline::Changed,
    /// Index runs this batch changed.
    unindex: Unindex,
}

impl<'t, R: Read> Removal<'t, R> {
    pub fn new(tree: &'t R) -> Self {
        Self {
            tree,
            refs: HashMap::new(),
            runs: HashMap::new(),
            unindex: Unindex::default(),
        }
    }

    pub fn remove(
        &mut self,
        writes: &mut Writes,
        integration: &str,
        entry: Indexed,
    ) -> Result<(), Error> {
        // The summary says where the raw input is, and on which alert's timeline the entry is
        // (read once for both, with the keys it is under).
        let (stored, keys) = stored_and_keys(self.tree, entry.id)?;
        let raw = stored.as_ref().and_then(|s| s.raw).unwrap_or(entry.id);
        // Packed data in the `L` value means there is none under `V` (older or larger may be).
        let data_inline = stored
            .as_ref()
            .is_some_and(|s| matches!(&s.inline, Inline::Packed(d) if !d.is_empty()));
        // A raw input in the `L` value leaves with it.
        let raw_inline = stored.as_ref().is_some_and(|s| s.raw_inline.is_some());
        let alert = stored.and_then(|s| s.summary.alert_id?.parse().ok());
        if let Some(alert) = alert {
            super::timeline::unlink(self.tree, &mut self.runs, writes, alert, entry.id)?;
        }
        self.unindex
            .remove(self.tree, writes, integration, &entry)?;
        for key in keys {
            writes.remove(key.to_vec());
        }
        if !data_inline {
            remove_chunks(self.tree, writes, DATA, entry.id)?;
        }
        if raw_inline {
            return Ok(());
        }
        let left = match self.refs.get(&raw) {
            Some(&n) => n,
            None => match self.tree.get(refs_key(raw))? {
                Some(v) => u64_at(&v),
                None => 1,
            },
        }
        .saturating_sub(1);
        self.refs.insert(raw, left);
        if left == 0 {
            // A raw input is under `B` (packed) or `R` (as received), never both.
            if remove_chunks(self.tree, writes, PACKED_RAW, raw)? == 0 {
                remove_chunks(self.tree, writes, RAW, raw)?;
            }
            writes.remove(refs_key(raw).to_vec());
        } else {
            writes.insert(refs_key(raw).to_vec(), left.to_be_bytes().to_vec());
        }
        Ok(())
    }
}

/// Removes every chunk of `kind` `id` that is in the tree; how many there were.
pub(super) fn remove_chunks(
    tree: &impl Read,
    writes: &mut Writes,
    kind: u8,
    id: u64,
) -> Result<usize, Error> {
    let mut removed = 0;
    for key in tree.scan_prefix(chunk_prefix(kind, id)).keys() {
        writes.remove(key?.to_vec());
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_summary_is_the_subject_or_title_on_one_line() {
        assert_eq!(
            summary_of(&json!({"subject": "Disk\r\n  full"})),
            "Disk full"
        );
        assert_eq!(summary_of(&json!({"Title": "T", "title": "t"})), "T");
        assert_eq!(summary_of(&json!({"title": "t"})), "t");
        assert_eq!(summary_of(&json!({"other": 1})), "");
        assert_eq!(summary_of(&json!({"subject": "x".repeat(500)})).len(), 200);
    }
}
