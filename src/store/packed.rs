//! How log entries are packed into sled values, and back: raw inputs zstd-compressed, an
//! entry's data compressed with its raw input as the dictionary (the data is mostly that input
//! again: an Alertmanager alert is a piece of its notification), and one `L` value holding the
//! summary and, when small, the data. Bytes in, bytes out; no sled, no I/O.
//!
//! Why zstd (the `zstd` crate, bindings to the reference library): it is fast enough to sit on
//! the intake path ([`prepack`], or the writer's for a large input; for a 2 KB e-mail, about
//! 12 µs for the message and 15 µs to prepare it as a dictionary and compress the entry's data
//! with it), compresses the repetitive JSON
//! of a notification 20-50x, and is the one common codec whose dictionaries take raw content,
//! which is what makes an entry's data cost a few dozen bytes beside its raw input.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::Read;

use super::Error;
use super::alerts::Outcome;
use super::logs::Source;

/// Fast: it runs on the intake path (and for large inputs on the writer's thread), and higher
/// levels gain little on JSON (a 1,000-alert notification: 9.1 KB at level 1, 9.9 KB at 3).
const LEVEL: i32 = 1;
/// An entry's data against its raw input: level 3 finds longer matches in the dictionary
/// (173 bytes per alert of that notification instead of 222) at the same speed.
const DATA_LEVEL: i32 = 3;
/// The first bytes of a zstd dictionary: a raw input that starts with them is not used as one
/// (zstd would read it as a trained dictionary rather than as raw content).
const DICTIONARY_MAGIC: [u8; 4] = 0xEC30_A437_u32.to_le_bytes();
/// An `L` value of this layout starts with this byte: its head is binary ([`BinaryHead`]).
/// Older ones start with [`FORMAT_JSON_HEAD`], or are JSON, starting with `{`.
const FORMAT: u8 = 2;
/// An `L` value of the first packed layout: the head's length (u32 LE), the head as JSON.
const FORMAT_JSON_HEAD: u8 = 1;
/// Packed data up to this size stays in the `L` value; larger data goes under `V`, so that a
/// list page (which reads `L` only) never reads much more than summaries.
pub(super) const INLINE_DATA: usize = 2048;

/// Packed data: a tag byte, then the bytes. Data stored before packing is plain JSON, whose
/// first byte (`{`) is none of these tags.
const WITH_RAW: u8 = 1;
const ZSTD: u8 = 2;
const PLAIN: u8 = 3;

fn codec(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Codec {
        what: what.to_string(),
        source,
    }
}

/// A raw input as stored: compressed, or `None` when compressing does not make it smaller.
pub(super) fn compress_raw(raw: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    if raw.len() < 64 {
        return Ok(None);
    }
    let packed = with_compressor(None, |c| c.compress(raw)).map_err(codec("a raw input"))?;
    Ok((packed.len() < raw.len()).then_some(packed))
}

/// The dictionary a thread's compressor has loaded: none, or a [`Dictionary`]'s number.
#[derive(Clone, Copy, PartialEq)]
enum Loaded {
    Plain,
    Raw(u64),
}

thread_local! {
    /// One zstd context per thread (the runtime's workers, the writer's), kept from input to
    /// input: creating one costs more than compressing a 2 KB message with it
    /// (`ZSTD_createCCtx` was 4% of the daemon's samples under SMTP load when every compression
    /// made its own).
    static COMPRESSOR: std::cell::RefCell<Option<(Loaded, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's compressor, loaded with `dictionary` (level [`DATA_LEVEL`]) or
/// with none (level [`LEVEL`]). A loaded dictionary stays in the context, so the entries of
/// one input in a row load it once.
fn with_compressor<T>(
    dictionary: Option<(u64, &[u8])>,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (loaded, c) = match cell.as_mut() {
            Some(kept) => kept,
            None => cell.insert((Loaded::Plain, zstd::bulk::Compressor::new(LEVEL)?)),
        };
        let wanted = dictionary.map_or(Loaded::Plain, |(n, _)| Loaded::Raw(n));
        if *loaded != wanted {
            // Marked plain first: a failed load leaves no half-loaded dictionary in use.
            *loaded = Loaded::Plain;
            match dictionary {
                Some((_, raw)) => c.set_dictionary(DATA_LEVEL, raw)?,
                None => c.set_compression_level(LEVEL)?,
            }
            *loaded = wanted;
        }
        f(c)
    })
}

/// A raw input stored compressed, as received.
pub(super) fn decompress_raw(packed: &[u8]) -> Result<Vec<u8>, Error> {
    zstd::stream::decode_all(packed).map_err(codec("a raw input"))
}

/// What an input's entries' data is compressed with: its raw input as a dictionary (raw
/// content: zstd matches against it as if it preceded the data). Each gets a number of its
/// own, so that the thread's compressor knows when it already has it loaded.
pub(super) struct Dictionary(Option<(u64, Vec<u8>)>);

impl Dictionary {
    pub fn new(raw: &[u8]) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let usable = raw.len() >= 16 && !raw.starts_with(&DICTIONARY_MAGIC);
        Self(usable.then(|| {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (n, raw.to_vec())
        }))
    }

    /// One entry's data (JSON) as stored.
    pub fn pack(&self, json: &[u8]) -> Result<Vec<u8>, Error> {
        let dictionary = self.0.as_ref().map(|(n, raw)| (*n, raw.as_slice()));
        let tag = if dictionary.is_some() { WITH_RAW } else { ZSTD };
        let packed = with_compressor(dictionary, |c| c.compress(json))
            .map(|p| (tag, p))
            .map_err(codec("log data"))?;
        let (tag, bytes) = if packed.1.len() < json.len() {
            packed
        } else {
            (PLAIN, json.to_vec())
        };
        let mut out = Vec::with_capacity(bytes.len() + 1);
        out.push(tag);
        out.extend_from_slice(&bytes);
        Ok(out)
    }
}

/// Above this size a dictionary is not kept loaded once its input is done with, so that a
/// large notification's copy (and zstd's tables for it) leave memory with it.
const KEEP_LOADED: usize = 64 << 10;

impl Drop for Dictionary {
    fn drop(&mut self) {
        let Some((n, raw)) = &self.0 else { return };
        if raw.len() > KEEP_LOADED {
            let _ = COMPRESSOR.try_with(|cell| {
                if let Ok(mut cell) = cell.try_borrow_mut()
                    && cell.as_ref().is_some_and(|(l, _)| *l == Loaded::Raw(*n))
                {
                    *cell = None;
                }
            });
        }
    }
}

/// Inputs up to this size are packed by their submitter ([`prepack`]); larger ones by the
/// writer, so that packing a large input never holds a runtime thread for long.
const PREPACK_UP_TO: usize = KEEP_LOADED;

/// One log entry's values packed before the writer sees them: its data as
/// [`Dictionary::pack`] makes it and, for the first entry of its raw input, the raw input as
/// stored ([`compress_raw`]; `Some(None)`: stored plain).
pub(super) struct Prepacked {
    pub data: Vec<u8>,
    pub raw: Option<Option<Vec<u8>>>,
}

/// Packs one request's entries on the submitter's thread (its own compressor: one per runtime
/// worker, so as many as there are cores), which takes zstd off the writer's one thread.
/// Empty, and left to the writer, when an input is large or an entry cannot be packed; the
/// values are the same either way (`data` depends on the entry and its raw input only).
pub(super) fn prepack(logs: &[super::NewLog]) -> Vec<Prepacked> {
    let packed = || -> Result<Vec<Prepacked>, Error> {
        let mut out: Vec<Prepacked> = Vec::with_capacity(logs.len());
        let mut dictionary: Option<(&std::sync::Arc<[u8]>, Dictionary)> = None;
        for (i, log) in logs.iter().enumerate() {
            if log.raw.len() > PREPACK_UP_TO {
                return Ok(Vec::new());
            }
            let shares = |l: &super::NewLog| std::sync::Arc::ptr_eq(&l.raw, &log.raw);
            let raw = match &dictionary {
                Some((r, _)) if std::sync::Arc::ptr_eq(r, &log.raw) => None,
                _ if logs[..i].iter().any(shares) => {
                    // An input whose entries are not in a row: the writer packs the request.
                    return Ok(Vec::new());
                }
                _ => {
                    dictionary = Some((&log.raw, Dictionary::new(&log.raw)));
                    Some(compress_raw(&log.raw)?)
                }
            };
            let (_, d) = dictionary.as_ref().expect("set above");
            out.push(Prepacked {
                data: d.pack(&super::entry_data::data_bytes(log)?)?,
                raw,
            });
        }
        Ok(out)
    };
    packed().unwrap_or_default()
}

/// The data (JSON) of packed `stored`; `raw` gives the entry's raw input when it was packed
/// with it.
pub(super) fn unpack<'r>(
    stored: &[u8],
    raw: impl FnOnce() -> Result<&'r [u8], Error>,
) -> Result<Vec<u8>, Error> {
    let Some((&tag, bytes)) = stored.split_first() else {
        return Ok(Vec::new());
    };
    match tag {
        WITH_RAW => {
            let raw = raw()?;
            let mut out = Vec::new();
            zstd::stream::read::Decoder::with_dictionary(bytes, raw)
                .and_then(|mut d| d.read_to_end(&mut out))
                .map_err(codec("log data"))?;
            Ok(out)
        }
        ZSTD => zstd::stream::decode_all(bytes).map_err(codec("log data")),
        PLAIN => Ok(bytes.to_vec()),
        _ => Ok(stored.to_vec()),
    }
}

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

/// A value that does not decode as `what`.
pub(super) fn invalid(what: &str, e: impl std::fmt::Display) -> Error {
    codec(what)(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        e.to_string(),
    ))
}

fn corrupt_head(e: impl std::fmt::Display) -> Error {
    invalid("a log entry's head", e)
}

/// An `L` value: the format byte, the head ([`BinaryHead`]), then the packed data, or nothing
/// when the data is under `V`.
pub(super) fn entry(head: &Head, data: Option<&[u8]>) -> Vec<u8> {
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
    let data = data.unwrap_or_default();
    let mut out = vec![FORMAT];
    // Plain integers and strings into a vector: serializing cannot fail.
    out = postcard::to_extend(&binary, out).unwrap_or_else(|_| vec![FORMAT]);
    out.extend_from_slice(data);
    out
}

/// A stored `L` value: packed (its head, and its inline data, empty when under `V`), or
/// `None` for the JSON of entries written before packing.
pub(super) fn split_entry(value: &[u8]) -> Option<Result<(Head, &[u8]), Error>> {
    let (&format, rest) = value.split_first()?;
    Some(match format {
        FORMAT => postcard::take_from_bytes::<BinaryHead>(rest)
            .map_err(corrupt_head)
            .and_then(|(h, data)| {
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
                Ok((head, data))
            }),
        FORMAT_JSON_HEAD => {
            let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let head = rest.get(4..4 + len)?;
            serde_json::from_slice(head)
                .map(|h| (h, &rest[4 + len..]))
                .map_err(corrupt_head)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_packed_with_its_raw_input_comes_back_and_is_small() {
        let raw: Vec<u8> = (0..200)
            .map(|i| {
                format!(r#"{{"labels":{{"instance":"web-{i}:9100"}},"fingerprint":"{i:016x}"}},"#)
            })
            .collect::<String>()
            .into_bytes();
        let dict = Dictionary::new(&raw);
        let data =
            br#"{"labels":{"instance":"web-7:9100"},"fingerprint":"0000000000000007","title":"t"}"#;
        let packed = dict.pack(data).unwrap();
        assert_eq!(packed[0], WITH_RAW);
        assert!(packed.len() < data.len() / 2, "{} bytes", packed.len());
        assert_eq!(unpack(&packed, || Ok(&raw[..])).unwrap(), data);
        // Without a usable raw input, data is compressed alone or kept as it is.
        let none = Dictionary::new(b"");
        assert_eq!(
            unpack(&none.pack(data).unwrap(), || unreachable!()).unwrap(),
            data
        );
        assert_eq!(
            unpack(&none.pack(b"{}").unwrap(), || unreachable!()).unwrap(),
            b"{}"
        );
        // Data stored before packing is JSON and reads as it is.
        assert_eq!(
            unpack(b"{\"a\":1}", || unreachable!()).unwrap(),
            b"{\"a\":1}"
        );
        let raw_packed = compress_raw(&raw).unwrap().unwrap();
        assert!(raw_packed.len() < raw.len() / 4);
        assert_eq!(decompress_raw(&raw_packed).unwrap(), raw);
        assert_eq!(compress_raw(b"tiny").unwrap(), None);
    }

    #[test]
    fn one_compressor_serves_interleaved_inputs_and_plain_raw_inputs() {
        // The thread's compressor switches between dictionaries and no dictionary: each
        // entry must come back with its own input, whatever was packed in between.
        let input = |tag: &str| -> Vec<u8> {
            (0..300)
                .map(|i| format!("{tag}-{i}: disk {i}% full on host-{tag}-{i}\n"))
                .collect::<String>()
                .into_bytes()
        };
        let (a, b) = (input("alpha"), input("beta"));
        let large = input("g").repeat(40);
        assert!(large.len() > KEEP_LOADED);
        let (da, db, dl) = (
            Dictionary::new(&a),
            Dictionary::new(&b),
            Dictionary::new(&large),
        );
        let data = |raw: &[u8]| raw[raw.len() / 2..raw.len() / 2 + 90].to_vec();
        let mut packed = Vec::new();
        for (dict, raw) in [(&da, &a), (&db, &b), (&da, &a), (&dl, &large), (&db, &b)] {
            packed.push((dict.pack(&data(raw)).unwrap(), raw.clone()));
            let plain = compress_raw(raw).unwrap().unwrap();
            assert_eq!(decompress_raw(&plain).unwrap(), *raw);
        }
        drop(dl);
        packed.push((da.pack(&data(&a)).unwrap(), a.clone()));
        for (p, raw) in &packed {
            assert_eq!(p[0], WITH_RAW);
            assert_eq!(unpack(p, || Ok(&raw[..])).unwrap(), data(raw));
        }
    }

    #[test]
    fn prepacked_values_are_what_the_writer_would_store() {
        let log = |raw: &std::sync::Arc<[u8]>, n: u32| super::super::NewLog {
            integration: "am".into(),
            received_at: std::time::SystemTime::UNIX_EPOCH,
            source: Source::Http,
            remote_addr: "127.0.0.1:1".into(),
            data: serde_json::json!({ "n": n, "text": String::from_utf8_lossy(raw) }),
            alert: None,
            outcome: None,
            error: None,
            raw: raw.clone(),
            email: None,
        };
        let text = |tag: &str| -> std::sync::Arc<[u8]> {
            (0..100)
                .map(|i| format!("{tag} {i}: disk full on host-{i}\n"))
                .collect::<String>()
                .into_bytes()
                .into()
        };
        let (a, b) = (text("alpha"), text("beta"));
        let logs = [log(&a, 1), log(&a, 2), log(&b, 3)];
        let packed = prepack(&logs);
        assert_eq!(packed.len(), 3);
        // The raw input once per input, on its first entry, as the writer compresses it.
        assert_eq!(packed[0].raw, Some(compress_raw(&a).unwrap()));
        assert_eq!(packed[1].raw, None);
        assert_eq!(packed[2].raw, Some(compress_raw(&b).unwrap()));
        for (p, l) in packed.iter().zip(&logs) {
            assert_eq!(p.data[0], WITH_RAW);
            let json = super::super::entry_data::data_bytes(l).unwrap();
            assert_eq!(unpack(&p.data, || Ok(&l.raw[..])).unwrap(), json);
        }
        // An input whose entries are apart, or a large one, is left to the writer.
        assert!(prepack(&[log(&a, 1), log(&b, 2), log(&a, 3)]).is_empty());
        let large: std::sync::Arc<[u8]> = vec![b'x'; PREPACK_UP_TO + 1].into();
        assert!(prepack(&[log(&a, 1), log(&large, 2)]).is_empty());
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
