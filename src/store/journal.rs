//! Siren's own write-ahead journal in front of sled: a group commit's writes are appended to a
//! preallocated file and made durable with one `pwrite` and one `fdatasync`; only then does
//! sled get them (in memory, key by key), and it is flushed behind the journal at checkpoints;
//! opening the store replays whatever the last checkpoint may not have covered. See
//! ARCHITECTURE.md, "Durability".
//!
//! Every group's writes end with its record's sequence number under [`SEQ_KEY`], in sled and
//! in the record: whatever sled recovered by itself after a crash (a prefix of what it was
//! given) holds the number of the last group it has in full, and opening replays exactly the
//! records after it.
//!
//! Two files, `journal-0` and `journal-1`; appends go to the active one. A file's content is the
//! run of records from offset 0 whose sequence numbers follow each other and whose checksums
//! hold; each record starts on a 4 KiB boundary (no page is written twice). Appends bypass the
//! page cache where the filesystem allows it: one `pwrite` on a handle opened with `O_DIRECT`
//! and `O_DSYNC`, durable when it returns, which costs about half the CPU of a buffered
//! `pwrite` and `fdatasync` and answers sooner ([`Journal::append`]). When the active
//! file passes [`SWITCH`] bytes and the last checkpoint succeeded, appends move to the other
//! file (whose records that checkpoint covered) and a new checkpoint (sled's `flush()` and an
//! `fdatasync` of its data file) starts in the background for the file left behind.
//! That flush and fdatasync ([`sync_files`], on the handle [`open_data_file`] gives) are here
//! too: the writer's start and healing sync sled with them as well.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use super::writes::Writes;
use super::{Error, SledStore};

/// Where each group's batch records its journal sequence number.
pub(super) const SEQ_KEY: &[u8] = b"~journal";

/// Bytes appended to one file before appends move to the other (and a checkpoint starts):
/// about half a second of 2 KB messages, about as often as sled flushes by itself.
const SWITCH: u64 = 1 << 20;
/// Each file is preallocated with written blocks, so that an append changes no metadata. Both
/// together stay small beside a small disk (the store heals on an 8 MiB tmpfs in the tests).
const PREALLOCATE: u64 = 3 << 19;
const ALIGN: u64 = 4096;
const MAGIC: u32 = 0x5349_524a; // "SIRJ"
/// Record header: magic, sequence number, payload length, CRC-32 of sequence and payload.
const HEADER: usize = 4 + 8 + 4 + 4;

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const FAILED: u8 = 2;

fn file_path(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("journal-{n}"))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// Adds the group's sequence number to its writes (the last write, so it is in the record too)
/// and squashes them: the record and sled get each key's last write only.
pub(super) fn stamp(writes: &mut Writes, seq: u64) {
    writes.insert(SEQ_KEY, seq.to_be_bytes().to_vec());
    writes.squash();
}

/// The sequence number of the last group `tree` holds (0: none since journals began).
fn stamped(tree: &sled::Tree) -> Result<u64, Error> {
    Ok(tree.get(SEQ_KEY)?.map_or(0, |v| super::u64_at(&v)))
}

/// A group's writes as a journal payload: per write, a tag (1 insert, 0 remove), the key's
/// length (u32 LE) and bytes, and for an insert the value's length and bytes.
pub(super) fn encode(writes: &Writes) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in writes.ops() {
        out.push(u8::from(value.is_some()));
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        if let Some(v) = value {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v);
        }
    }
    out
}

/// The sled batch a payload stands for; `None` if it does not parse (it then was not written).
fn decode(mut p: &[u8]) -> Option<sled::Batch> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (a, b) = (p.get(..n)?, p.get(n..)?);
        *p = b;
        Some(a)
    }
    fn len(p: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(p, 4)?.try_into().ok()?) as usize)
    }
    let mut batch = sled::Batch::default();
    while !p.is_empty() {
        let tag = take(&mut p, 1)?[0];
        let n = len(&mut p)?;
        let key = take(&mut p, n)?;
        if tag == 1 {
            let n = len(&mut p)?;
            batch.insert(key, take(&mut p, n)?);
        } else {
            batch.remove(key);
        }
    }
    Some(batch)
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// The valid run of records of one file: (sequence number, payload), in order.
fn read_run(path: &Path) -> Result<Vec<(u64, Vec<u8>)>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut at = 0usize;
    while let Some(h) = bytes.get(at..at + HEADER) {
        let word = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(h[4..12].try_into().expect("8 bytes"));
        let (len, crc) = (word(12) as usize, word(16));
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        let follows = out.last().is_none_or(|(last, _)| seq == last + 1);
        if word(0) != MAGIC || !follows || checksum(seq, payload) != crc {
            break;
        }
        out.push((seq, payload.to_vec()));
        at = (at + HEADER + len).next_multiple_of(ALIGN as usize);
    }
    Ok(out)
}

/// Applies, in order, the records of both files that `tree` does not hold yet: those after
/// the sequence number sled recovered (at open, before anything else reads or writes it).
/// sled holds a prefix of what it was given, in order: every group up to the one its stamp
/// names, and possibly part of the next, which the writer gives sled only once its record is
/// durable (so the record is here, and replaying it whole completes the group). An age prune
/// goes to sled first, as one atomic batch: sled may hold one prune more than the journal.
/// The caller flushes sled afterwards.
pub(super) fn replay(dir: &Path, tree: &sled::Tree) -> Result<usize, Error> {
    let mut runs = [read_run(&file_path(dir, 0))?, read_run(&file_path(dir, 1))?];
    runs.sort_by_key(|r| r.first().map_or(0, |(seq, _)| *seq));
    let mut last = stamped(tree)?;
    let mut applied = 0;
    for (seq, payload) in runs.into_iter().flatten() {
        if seq <= last {
            continue;
        }
        if seq != last + 1 {
            // The checkpoint that let appends move on should have covered the records missing
            // here: say so, and keep what there is.
            tracing::error!(seq, after = last, "the store's journal has a gap");
        }
        if let Some(batch) = decode(&payload) {
            tree.apply_batch(batch)?;
            applied += 1;
        }
        last = seq;
    }
    Ok(applied)
}

/// The writer's journal: the two files, where the next record goes, and the checkpoint.
pub(super) struct Journal {
    dir: PathBuf,
    files: [File; 2],
    /// Each file opened again with `O_DIRECT | O_DSYNC`, where its filesystem allows that.
    direct: [Option<File>; 2],
    /// Where a record is laid out for a direct write (at a 4 KiB aligned place in it).
    buf: Vec<u8>,
    active: usize,
    offset: u64,
    seq: u64,
    checkpoint: Arc<AtomicU8>,
}

impl Journal {
    /// Opens (creating and preallocating) both files and empties them, after making sled
    /// (`db`, its tree `tree`, data file `data_file`) durable: call it only on a store whose
    /// [`replay`] ran, so that sled holds every record. Numbering goes on from sled's.
    pub(super) fn open(
        dir: &Path,
        db: &sled::Db,
        tree: &sled::Tree,
        data_file: &File,
    ) -> Result<Journal, Error> {
        sync_files(db, data_file, &dir.join("db"))?;
        let seq = stamped(tree)? + 1;
        let mut files = Vec::new();
        for n in 0..2 {
            let path = file_path(dir, n);
            let f = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io(&path))?;
            let len = f.metadata().map_err(io(&path))?.len();
            if len > PREALLOCATE {
                // A group larger than the file made it grow: back to its size.
                f.set_len(PREALLOCATE).map_err(io(&path))?;
            }
            if len < PREALLOCATE {
                // Page by page: written in larger pieces, the page cache keeps the file in large
                // folios, and every later 4 KiB append then counts (and is written back) as a
                // whole folio: 262 KiB of write_bytes per 2 KiB message, measured.
                let zeros = [0u8; ALIGN as usize];
                let mut at = len;
                while at < PREALLOCATE {
                    f.write_all_at(&zeros, at).map_err(io(&path))?;
                    at += zeros.len() as u64;
                }
            }
            // No record from an earlier run may read as the start of this one's.
            f.write_all_at(&[0u8; HEADER], 0).map_err(io(&path))?;
            f.sync_all().map_err(io(&path))?;
            files.push(f);
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        let files: [File; 2] = files.try_into().expect("two files");
        let direct = [0, 1].map(|n| open_direct(&file_path(dir, n)));
        Ok(Journal {
            dir: dir.to_owned(),
            files,
            direct,
            buf: Vec::new(),
            active: 0,
            offset: 0,
            seq,
            checkpoint: Arc::new(AtomicU8::new(IDLE)),
        })
    }

    /// The sequence number the next group's writes are stamped with (see [`stamp`]).
    pub(super) fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Appends group `seq`'s payload and makes it durable. Groups come in order: a gap (a
    /// group whose record was never appended) is refused, as the run would end at it and hide
    /// every later record.
    pub(super) fn append(&mut self, seq: u64, payload: &[u8]) -> Result<(), Error> {
        // The file's path is only for errors: it is not built for every append.
        let path = |j: &Self| file_path(&j.dir, j.active);
        if seq != self.seq {
            return Err(Error::Io {
                path: path(self),
                source: std::io::Error::other(format!(
                    "journal record {seq} out of order (expected {})",
                    self.seq
                )),
            });
        }
        // Padded to the boundary so that the next record starts on a page of its own, and
        // laid out where a direct write can take it from: 4 KiB aligned in `buf`.
        let len = (HEADER + payload.len()).next_multiple_of(ALIGN as usize);
        self.buf.clear();
        self.buf.resize(len + ALIGN as usize, 0);
        let at = self.buf.as_ptr().align_offset(ALIGN as usize);
        let record = &mut self.buf[at..at + len];
        record[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        record[4..12].copy_from_slice(&self.seq.to_le_bytes());
        record[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        record[16..20].copy_from_slice(&checksum(self.seq, payload).to_le_bytes());
        record[HEADER..HEADER + payload.len()].copy_from_slice(payload);
        let record = &self.buf[at..at + len];
        let direct = self.direct[self.active]
            .as_ref()
            .map(|f| f.write_all_at(record, self.offset));
        match direct {
            Some(Ok(())) => {}
            Some(Err(e)) if e.raw_os_error() != Some(libc::EINVAL) => {
                return Err(io(&path(self))(e));
            }
            buffered => {
                // EINVAL: no direct writes here after all (the filesystem's alignment): this
                // file goes through the page cache from now on.
                if let Some(Err(e)) = buffered {
                    tracing::warn!(path = %path(self).display(), error = %e, "journal appends go through the page cache");
                    self.direct[self.active] = None;
                }
                let file = &self.files[self.active];
                file.write_all_at(record, self.offset)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| io(&path(self))(e))?;
            }
        }
        self.offset += len as u64;
        self.seq += 1;
        Ok(())
    }

    /// Past [`SWITCH`] bytes: [`Journal::retire_if_full`] would move appends to the other file.
    pub(super) fn wants_retire(&self) -> bool {
        self.offset >= SWITCH
    }

    /// Called once sled holds every record appended so far: past [`SWITCH`] bytes, appends
    /// move to the other file and a checkpoint of `db` (whose data file is `data_file`) starts
    /// for the file left behind.
    pub(super) fn retire_if_full(&mut self, db: &sled::Db, data_file: &Arc<File>) {
        if self.offset >= SWITCH {
            self.maybe_switch(db, data_file);
        }
    }

    /// Moves appends to the other file once the checkpoint that covers it is done, and starts
    /// the checkpoint for this one. After a failed checkpoint, first a new one (covering both
    /// files), and the switch at a later append.
    fn maybe_switch(&mut self, db: &sled::Db, data_file: &Arc<File>) {
        let state = self.checkpoint.load(Ordering::Acquire);
        if state == RUNNING {
            return; // the file grows a little past SWITCH meanwhile
        }
        if state == IDLE {
            self.active = 1 - self.active;
            self.offset = 0;
            // Its records are all in sled: a file that large groups made grow gets its size back.
            let file = &self.files[self.active];
            if file.metadata().is_ok_and(|m| m.len() > PREALLOCATE)
                && let Err(e) = file.set_len(PREALLOCATE)
            {
                tracing::warn!(error = %e, "could not shrink a journal file");
            }
        }
        self.checkpoint.store(RUNNING, Ordering::Release);
        let (db, file, flag) = (db.clone(), data_file.clone(), self.checkpoint.clone());
        let path = self.dir.join("db");
        std::thread::spawn(move || {
            let done = match sync_files(&db, &file, &path) {
                Ok(()) => IDLE,
                Err(e) => {
                    tracing::error!(error = %e, "journal checkpoint failed; trying again");
                    FAILED
                }
            };
            flag.store(done, Ordering::Release);
        });
    }
}

/// `path` opened for appends that are durable when `pwrite` returns and bypass the page cache
/// (`O_DIRECT | O_DSYNC`); `None` where its filesystem refuses direct I/O (appends then take a
/// buffered `pwrite` and an `fdatasync`). The file's blocks are all written before (see
/// [`PREALLOCATE`]), so such a write changes no metadata: the device's cache flush is all the
/// sync adds.
fn open_direct(path: &Path) -> Option<File> {
    match File::options()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::info!(path = %path.display(), error = %e, "no direct I/O for the journal");
            None
        }
    }
}

/// Our own handle on sled's data file, for the fdatasync that sled's flush leaves out.
pub(super) fn open_data_file(store: &SledStore) -> Result<File, Error> {
    let path = store.path.join("db");
    File::options()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Io { path, source })
}

/// sled's blocking flush (its log, with `sync_file_range`), then fdatasync of its data file,
/// which that does not make durable by itself (file metadata).
pub(super) fn sync_files(db: &sled::Db, file: &File, path: &std::path::Path) -> Result<(), Error> {
    db.flush()?;
    file.sync_data().map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal opened on a fresh sled store in a temporary directory.
    fn opened() -> (tempfile::TempDir, sled::Db, Arc<File>, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path().join("s"))
            .open()
            .unwrap();
        let data = Arc::new(File::open(dir.path().join("s/db")).unwrap());
        let journal = Journal::open(dir.path(), &db, &db, &data).unwrap();
        (dir, db, data, journal)
    }

    #[test]
    fn appends_read_back_the_same_written_directly_or_through_the_page_cache() {
        let (dir, _db, _data, mut journal) = opened();
        // A temporary directory's filesystem (ext4, tmpfs) takes direct writes.
        assert!(journal.direct.iter().all(Option::is_some));
        let payloads = [vec![1u8; 10], vec![2u8; 5000], vec![3u8; 4096 - HEADER]];
        journal.append(1, &payloads[0]).unwrap();
        // Where direct I/O is refused, appends take a buffered pwrite and an fdatasync.
        journal.direct = [None, None];
        journal.append(2, &payloads[1]).unwrap();
        journal.append(3, &payloads[2]).unwrap();
        assert_eq!(journal.offset, 4096 * 4);
        let run = read_run(&file_path(dir.path(), 0)).unwrap();
        let expected: Vec<(u64, Vec<u8>)> = (1..).zip(payloads).collect();
        assert_eq!(run, expected);
    }

    #[test]
    fn torn_or_stale_records_end_the_run_and_replay_restores_the_writes() {
        let (dir, db, data, mut journal) = opened();
        assert_eq!(journal.next_seq(), 1);
        let mut w = Writes::default();
        w.insert(&b"a"[..], &b"1"[..]);
        w.insert(&b"b"[..], &b"2"[..]);
        stamp(&mut w, 1);
        journal.append(1, &encode(&w)).unwrap();
        let mut w = Writes::default();
        w.remove(&b"a"[..]);
        w.insert(&b"c"[..], vec![7u8; 10_000]);
        stamp(&mut w, 2);
        // Out of order: refused (the run would end at the gap).
        assert!(journal.append(3, &encode(&w)).is_err());
        journal.append(2, &encode(&w)).unwrap();
        // A torn third record: its checksum fails, the run ends before it.
        let f = &journal.files[0];
        f.write_all_at(&MAGIC.to_le_bytes(), journal.offset)
            .unwrap();
        assert_eq!(read_run(&file_path(dir.path(), 0)).unwrap().len(), 2);
        let tree = sled::Config::new().temporary(true).open().unwrap();
        tree.insert(b"a", &b"old"[..]).unwrap();
        assert_eq!(replay(dir.path(), &tree).unwrap(), 2);
        assert_eq!(tree.get(b"a").unwrap(), None);
        assert_eq!(tree.get(b"b").unwrap().unwrap(), &b"2"[..]);
        assert_eq!(tree.get(b"c").unwrap().unwrap().len(), 10_000);
        assert_eq!(stamped(&tree).unwrap(), 2);
        // sled that recovered group 1 by itself gets group 2 only; sled ahead of the journal
        // (a group applied, never synced) gets nothing replayed over it.
        let behind = sled::Config::new().temporary(true).open().unwrap();
        behind.insert(b"a", &b"1"[..]).unwrap();
        behind.insert(SEQ_KEY, &1u64.to_be_bytes()[..]).unwrap();
        assert_eq!(replay(dir.path(), &behind).unwrap(), 1);
        assert_eq!(behind.get(b"a").unwrap(), None);
        // sled that holds part of group 2 (written key by key after its record was durable,
        // cut short by a crash; its stamp, written last, still says 1) gets all of group 2.
        let partial = sled::Config::new().temporary(true).open().unwrap();
        partial.insert(b"a", &b"1"[..]).unwrap();
        partial.insert(b"b", &b"2"[..]).unwrap();
        partial.insert(b"c", vec![7u8; 10_000]).unwrap();
        partial.insert(SEQ_KEY, &1u64.to_be_bytes()[..]).unwrap();
        assert_eq!(replay(dir.path(), &partial).unwrap(), 1);
        assert_eq!(partial.get(b"a").unwrap(), None);
        assert_eq!(partial.get(b"c").unwrap().unwrap().len(), 10_000);
        assert_eq!(stamped(&partial).unwrap(), 2);
        let ahead = sled::Config::new().temporary(true).open().unwrap();
        ahead.insert(b"a", &b"3"[..]).unwrap();
        ahead.insert(SEQ_KEY, &3u64.to_be_bytes()[..]).unwrap();
        assert_eq!(replay(dir.path(), &ahead).unwrap(), 0);
        assert_eq!(ahead.get(b"a").unwrap().unwrap(), &b"3"[..]);
        // Opening again empties both files; numbering goes on from sled's.
        drop(journal);
        db.insert(SEQ_KEY, &2u64.to_be_bytes()[..]).unwrap();
        let journal = Journal::open(dir.path(), &db, &db, &data).unwrap();
        assert_eq!(read_run(&file_path(dir.path(), 0)).unwrap().len(), 0);
        assert_eq!(journal.next_seq(), 3);
    }
}
