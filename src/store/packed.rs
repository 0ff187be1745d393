//! How log entries are packed into sled values, and back: raw inputs zstd-compressed, and an
//! entry's data compressed with its raw input as the dictionary (the data is mostly that input
//! again: an Alertmanager alert is a piece of its notification). The `L` value that holds them
//! is laid out in `entry_value.rs`. Bytes in, bytes out; no sled, no I/O.
//!
//! Why zstd (the `zstd` crate, bindings to the reference library): it is fast enough to sit on
//! the intake path ([`prepack`], or the writer's for a large input; for a 2 KB e-mail, about
//! 12 µs for the message and 15 µs to prepare it as a dictionary and compress the entry's data
//! with it), compresses the repetitive JSON
//! of a notification 20-50x, and is the one common codec whose dictionaries take raw content,
//! which is what makes an entry's data cost a few dozen bytes beside its raw input.

use std::io::Read;

use super::Error;

/// Fast: it runs on the intake path (and for large inputs on the writer's thread), and higher
/// levels gain little on JSON (a 1,000-alert notification: 9.1 KB at level 1, 9.9 KB at 3).
const LEVEL: i32 = 1;
/// An entry's data against its raw input: level 3 finds longer matches in the dictionary
/// (173 bytes per alert of that notification instead of 222) at the same speed.
const DATA_LEVEL: i32 = 3;
/// The first bytes of a zstd dictionary: a raw input that starts with them is not used as one
/// (zstd would read it as a trained dictionary rather than as raw content).
const DICTIONARY_MAGIC: [u8; 4] = 0xEC30_A437_u32.to_le_bytes();

/// Packed data: a tag byte, then the bytes. Data stored before packing is plain JSON, whose
/// first byte (`{`) is none of these tags.
const WITH_RAW: u8 = 1;
const ZSTD: u8 = 2;
const PLAIN: u8 = 3;
/// Packed against the raw input's first [`HEAD`] bytes.
const WITH_HEAD: u8 = 4;

fn codec(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Codec {
        what: what.to_string(),
        source,
    }
}

/// Below this size a raw input is stored as received: zstd costs about 5 µs per frame
/// whatever its size (level 1, a kept context: 5.5 µs for a 189-byte webhook, 7.8 µs for a
/// 2 KiB e-mail), and saves a few dozen bytes here (189 to 128).
const COMPRESS_RAW_FROM: usize = 512;

/// Below this size an entry's data is packed against the start of its raw input only
/// ([`HEAD`]): loading the whole input as a dictionary costs 7.7 µs for a 2 KiB e-mail, whose
/// entry data (its envelope in postcard, 30-60 bytes) is found in its headers; its first 512
/// bytes cost 2.9 µs and pack it as small (53 bytes to 28).
const SMALL_DATA: usize = 64;
/// How much of its raw input small data is packed against.
const HEAD: usize = 512;

/// A raw input as stored: compressed, or `None` when it is small ([`COMPRESS_RAW_FROM`]) or
/// compressing does not make it smaller.
pub(super) fn compress_raw(raw: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    if raw.len() < COMPRESS_RAW_FROM {
        return Ok(None);
    }
    let packed = with_compressor(None, |c| c.compress(raw)).map_err(codec("a raw input"))?;
    Ok((packed.len() < raw.len()).then_some(packed))
}

/// The dictionary a thread's compressor has loaded: none, or a [`Dictionary`]'s number (its
/// whole raw input, or the input's [`HEAD`]).
#[derive(Clone, Copy, PartialEq)]
enum Loaded {
    Plain,
    Raw(u64),
    Head(u64),
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
    dictionary: Option<(Loaded, &[u8])>,
    f: impl FnOnce(&mut zstd::bulk::Compressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (loaded, c) = match cell.as_mut() {
            Some(kept) => kept,
            None => cell.insert((Loaded::Plain, zstd::bulk::Compressor::new(LEVEL)?)),
        };
        let wanted = dictionary.map_or(Loaded::Plain, |(l, _)| l);
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

    /// One entry's data (JSON, or an e-mail's packed envelope) as stored: small data against
    /// the input's start only ([`SMALL_DATA`]).
    pub fn pack(&self, json: &[u8]) -> Result<Vec<u8>, Error> {
        let (dictionary, tag) = match &self.0 {
            None => (None, ZSTD),
            Some((n, raw)) if json.len() < SMALL_DATA && raw.len() > HEAD => {
                (Some((Loaded::Head(*n), &raw[..HEAD])), WITH_HEAD)
            }
            Some((n, raw)) => (Some((Loaded::Raw(*n), raw.as_slice())), WITH_RAW),
        };
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
        WITH_RAW | WITH_HEAD => {
            let raw = raw()?;
            let raw = if tag == WITH_HEAD {
                raw.get(..HEAD)
                    .ok_or_else(|| invalid("log data", "its raw input is too short"))?
            } else {
                raw
            };
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

/// A value that does not decode as `what`.
pub(super) fn invalid(what: &str, e: impl std::fmt::Display) -> Error {
    codec(what)(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        e.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::logs::Source;
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
        // A small input is stored as received and small data as it is: zstd would cost more
        // than it saves.
        let small = br#"{"event_type":"create","Id":"a-1","Title":"disk full on web-1"}"#.repeat(7);
        assert!(small.len() < COMPRESS_RAW_FROM);
        assert_eq!(compress_raw(&small).unwrap(), None);
        // Small data is packed against the input's start: it comes back with the whole input.
        let envelope = &raw[HEAD - 40..HEAD - 40 + SMALL_DATA - 1];
        let packed = dict.pack(envelope).unwrap();
        assert_eq!(packed[0], WITH_HEAD);
        assert!(packed.len() < envelope.len() / 2, "{} bytes", packed.len());
        assert_eq!(unpack(&packed, || Ok(&raw[..])).unwrap(), envelope);
        assert!(unpack(&packed, || Ok(&raw[..HEAD - 1])).is_err());
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
}
