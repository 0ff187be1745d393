//! The layout of a log entry's `L` value: the format byte, the entry's head (what a list shows,
//! [`Head`]), its packed data when small (`packed.rs`), and for an input of one small entry
//! its raw input too. Bytes in, bytes out; no sled, no I/O.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use super::Error;
use super::alerts::Outcome;
use super::logs::Source;
use super::packed::{decompress_raw, invalid};

/// An `L` value of this layout starts with this byte: its head is binary ([`BinaryHead`]).
/// Older ones start with [`FORMAT_JSON_HEAD`], or are JSON, starting with `{`.
const FORMAT: u8 = 2;
/// An `L` value of the first packed layout: the head's length (u32 LE), the head as JSON.
const FORMAT_JSON_HEAD: u8 = 1;
/// An `L` value that holds its entry's raw input too ([`entry_with_raw`]): the binary head, the
/// data's length (u32 LE), the data, a byte saying how the raw input is kept ([`RAW_PACKED`],
/// [`RAW_PLAIN`]), and the raw input.
const FORMAT_RAW: u8 = 3;
const RAW_PACKED: u8 = 1;
const RAW_PLAIN: u8 = 2;
/// A raw input this small as stored goes into its entry's `L` value when it is the input's one
/// entry and its data is there too: one key less to write, and to remove with the entry.
pub(super) const INLINE_RAW: usize = 1024;
/// Packed data up to this size stays in the `L` value; larger data goes under `V`, so that a
/// list page (which reads `L` only) never reads much more than summaries.
pub(super) const INLINE_DATA: usize = 2048;

/// A log entry's summary as packed: short names, no nulls, and no id (it is the key's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Head {
    #[serde(rename = "i")]
    pub integration: String,
    #[serde(rename = "t")]
    pub received_ms: u64,
    #[serde(rename = "s")]
    pub source: Source,
    #[serde(rename = "a")]
    pub remote_addr: String,
    #[serde(rename = "n")]
    pub size: u64,
    #[serde(rename = "m", default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(rename = "A", default, skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<u64>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The id the raw input is stored under, when not the entry's own.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<u64>,
}

/// A [`Head`] as an `L` value holds it: postcard (integers as varints, strings and options
/// length- or flag-prefixed, no field names), the enums as their `I`-value bytes. A head in
/// JSON was 94 bytes for a typical e-mail entry, this one is 35; and as sled writes each byte
/// of a value about ten times over (deltas, page rewrites, splits, segment cleaning), every
/// byte kept out of a value per input is about ten bytes less written.
#[derive(Serialize, Deserialize)]
struct BinaryHead<'a> {
    received_ms: u64,
    source: u8,
    outcome: u8,
    size: u64,
    alert_id: Option<u64>,
    raw: Option<u64>,
    #[serde(borrow)]
    integration: Cow<'a, str>,
    #[serde(borrow)]
    remote_addr: Cow<'a, str>,
    #[serde(borrow)]
    summary: Cow<'a, str>,
    #[serde(borrow)]
    error: Option<Cow<'a, str>>,
}

fn source_byte(source: Source) -> u8 {
    match source {
        Source::Smtp => 0,
        Source::Http => 1,
    }
}

fn corrupt_head(e: impl std::fmt::Display) -> Error {
    invalid("a log entry's head", e)
}

/// An `L` value: the format byte, the head ([`BinaryHead`]), then the packed data, or nothing
/// when the data is under `V`.
pub(super) fn entry(head: &Head, data: Option<&[u8]>) -> Vec<u8> {
    let mut out = with_head(FORMAT, head);
    out.extend_from_slice(data.unwrap_or_default());
    out
}

/// A raw input as an `L` value of [`FORMAT_RAW`] keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RawValue<'a> {
    /// zstd-compressed ([`compress_raw`]).
    Packed(&'a [u8]),
    /// As received: small, or compressing it gains nothing ([`compress_raw`]).
    Plain(&'a [u8]),
}

impl RawValue<'_> {
    /// The raw input as received.
    pub fn bytes(self) -> Result<Vec<u8>, Error> {
        match self {
            RawValue::Packed(b) => decompress_raw(b),
            RawValue::Plain(b) => Ok(b.to_vec()),
        }
    }

    pub fn len(self) -> usize {
        match self {
            RawValue::Packed(b) | RawValue::Plain(b) => b.len(),
        }
    }
}

/// A [`RawValue`] with its bytes owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawOwned {
    Packed(Vec<u8>),
    Plain(Vec<u8>),
}

impl RawOwned {
    pub fn as_value(&self) -> RawValue<'_> {
        match self {
            RawOwned::Packed(b) => RawValue::Packed(b),
            RawOwned::Plain(b) => RawValue::Plain(b),
        }
    }
}

impl From<RawValue<'_>> for RawOwned {
    fn from(raw: RawValue<'_>) -> Self {
        match raw {
            RawValue::Packed(b) => RawOwned::Packed(b.to_vec()),
            RawValue::Plain(b) => RawOwned::Plain(b.to_vec()),
        }
    }
}

/// An `L` value that holds the entry's packed data and its input's raw bytes as stored: for
/// an input of one entry, whose raw input then needs no key of its own.
pub(super) fn entry_with_raw(head: &Head, data: &[u8], raw: RawValue<'_>) -> Vec<u8> {
    let mut out = with_head(FORMAT_RAW, head);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    let (tag, bytes) = match raw {
        RawValue::Packed(b) => (RAW_PACKED, b),
        RawValue::Plain(b) => (RAW_PLAIN, b),
    };
    out.push(tag);
    out.extend_from_slice(bytes);
    out
}

/// The format byte and the binary head.
fn with_head(format: u8, head: &Head) -> Vec<u8> {
    let binary = BinaryHead {
        received_ms: head.received_ms,
        source: source_byte(head.source),
        outcome: super::timeline::outcome_byte(head.outcome),
        size: head.size,
        alert_id: head.alert_id,
        raw: head.raw,
        integration: Cow::Borrowed(&head.integration),
        remote_addr: Cow::Borrowed(&head.remote_addr),
        summary: Cow::Borrowed(&head.summary),
        error: head.error.as_deref().map(Cow::Borrowed),
    };
    // Plain integers and strings into a vector: serializing cannot fail.
    postcard::to_extend(&binary, vec![format]).unwrap_or_else(|_| vec![format])
}

/// A stored `L` value: packed (its head, and its inline data, empty when under `V`), or
/// `None` for the JSON of entries written before packing.
#[cfg(test)]
pub(super) fn split_entry(value: &[u8]) -> Option<Result<(Head, &[u8]), Error>> {
    split_entry_raw(value).map(|r| r.map(|(head, data, _)| (head, data)))
}

/// As [`split_entry`], with the raw input the value holds, if it holds it ([`entry_with_raw`]).
pub(super) fn split_entry_raw(value: &[u8]) -> Option<SplitEntry<'_>> {
    let (&format, rest) = value.split_first()?;
    Some(match format {
        FORMAT => binary_head(rest).map(|(head, data)| (head, data, None)),
        FORMAT_RAW => binary_head(rest).and_then(|(head, rest)| {
            let (data, raw) = data_and_raw(rest).ok_or_else(|| corrupt_head("its raw input"))?;
            Ok((head, data, Some(raw)))
        }),
        FORMAT_JSON_HEAD => {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let head = rest.get(4..4 + len)?;
            serde_json::from_slice(head)
                .map(|h| (h, &rest[4 + len..], None))
                .map_err(corrupt_head)
        }
        _ => return None,
    })
}

/// A packed `L` value's head, data and raw input (when it holds it), or why it does not parse.
pub(super) type SplitEntry<'a> = Result<(Head, &'a [u8], Option<RawValue<'a>>), Error>;

/// The data and the raw input after a [`FORMAT_RAW`] head.
fn data_and_raw(rest: &[u8]) -> Option<(&[u8], RawValue<'_>)> {
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let data = rest.get(4..4 + len)?;
    let (&tag, raw) = rest.get(4 + len..)?.split_first()?;
    let raw = match tag {
        RAW_PACKED => RawValue::Packed(raw),
        RAW_PLAIN => RawValue::Plain(raw),
        _ => return None,
    };
    Some((data, raw))
}

/// A binary head and what follows it.
fn binary_head(rest: &[u8]) -> Result<(Head, &[u8]), Error> {
    let (h, after) = postcard::take_from_bytes::<BinaryHead>(rest).map_err(corrupt_head)?;
    let source = match h.source {
        0 => Source::Smtp,
        1 => Source::Http,
        n => return Err(corrupt_head(format!("source {n}"))),
    };
    let head = Head {
        integration: h.integration.into_owned(),
        received_ms: h.received_ms,
        source,
        remote_addr: h.remote_addr.into_owned(),
        size: h.size,
        summary: h.summary.into_owned(),
        outcome: super::timeline::byte_outcome(h.outcome),
        alert_id: h.alert_id,
        error: h.error.map(Cow::into_owned),
        raw: h.raw,
    };
    Ok((head, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_with_its_raw_input_splits_into_head_data_and_raw() {
        let head = Head {
            integration: "mail".into(),
            received_ms: 5,
            source: Source::Smtp,
            remote_addr: "127.0.0.1:2".into(),
            size: 3,
            summary: "s".into(),
            outcome: Some(Outcome::Created),
            alert_id: Some(9),
            error: None,
            raw: None,
        };
        for raw in [RawValue::Packed(b"zstd bytes"), RawValue::Plain(b"abc")] {
            let value = entry_with_raw(&head, b"\x01data", raw);
            let (h, d, r) = split_entry_raw(&value).unwrap().unwrap();
            assert_eq!((h, d, r), (head.clone(), &b"\x01data"[..], Some(raw)));
            // A list reads it as any other entry: its head and its data.
            assert_eq!(split_entry(&value).unwrap().unwrap().1, b"\x01data");
        }
        assert_eq!(RawValue::Plain(b"abc").bytes().unwrap(), b"abc");
        // Cut short, or with an unknown raw tag: an error, not a wrong entry.
        let value = entry_with_raw(&head, b"data", RawValue::Plain(b"abc"));
        assert!(split_entry_raw(&value[..value.len() - 5]).unwrap().is_err());
        let mut bad = value.clone();
        let tag_at = value.len() - 4;
        bad[tag_at] = 9;
        assert!(split_entry_raw(&bad).unwrap().is_err());
    }

    #[test]
    fn an_entry_splits_into_its_head_and_data_and_old_json_does_not() {
        let head = Head {
            integration: "am".into(),
            received_ms: 1,
            source: Source::Http,
            remote_addr: "127.0.0.1:1".into(),
            size: 10,
            summary: String::new(),
            outcome: None,
            alert_id: Some(7),
            error: None,
            raw: None,
        };
        let value = entry(&head, Some(b"\x03{}"));
        let (h, d) = split_entry(&value).unwrap().unwrap();
        assert_eq!(h, head);
        assert_eq!(d, b"\x03{}");
        assert_eq!(split_entry(&entry(&head, None)).unwrap().unwrap().1, b"");
        // Every field set, and a head of the first packed layout (JSON), still read.
        let full = Head {
            summary: "disk full on web-1".into(),
            outcome: Some(Outcome::Aggregated),
            error: Some("no rule".into()),
            raw: Some(3),
            source: Source::Smtp,
            ..head.clone()
        };
        let value = entry(&full, Some(b"x"));
        let (h, d) = split_entry(&value).unwrap().unwrap();
        assert_eq!((h, d), (full.clone(), &b"x"[..]));
        let json = serde_json::to_vec(&full).unwrap();
        let mut first = vec![FORMAT_JSON_HEAD];
        first.extend_from_slice(&(json.len() as u32).to_le_bytes());
        first.extend_from_slice(&json);
        first.extend_from_slice(b"x");
        let (h, d) = split_entry(&first).unwrap().unwrap();
        assert_eq!((h, d), (full, &b"x"[..]));
        // Binary, less than half the JSON head's size.
        let binary = entry(&head, None).len();
        assert!(
            binary * 2 < serde_json::to_vec(&head).unwrap().len(),
            "{binary} bytes"
        );
        assert!(split_entry(b"{\"id\":\"1\"}").is_none());
        assert!(split_entry(&[FORMAT, 0xff]).unwrap().is_err());
    }
}
