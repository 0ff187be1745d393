//! `siren compact`: the sled store copied, key by key, into a fresh directory that then takes
//! its place. sled 0.34 reclaims a log segment only once less than half of it is live (a
//! constant), so a store that has taken 1,000,000 alerts holds about 12 times its live keys and
//! values on disk (bench/profile.md, "Disk use"); a fresh copy of the same keys holds 1.84-1.86
//! times. The daemon must be stopped: sled's lock on `db` refuses a second process.
//!
//! Crash argument: the copy is built beside the store (`PATH.compact`), replayed journal and
//! all (it is opened the way the daemon opens it, so it holds every record the journal had),
//! flushed and its files and directory synced before anything else happens. The two
//! directories are then swapped with one `renameat2(RENAME_EXCHANGE)`, which is atomic: a
//! crash before it leaves the store as it was (and a stale copy, removed by the next run), a
//! crash after it the compacted store (and the old one under `PATH.compact`, removed at the
//! end of the run or by the next one). At no point is `PATH` missing or half written.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Error, open_handles};

/// The copy goes into sled in batches of this many keys (or [`BATCH_BYTES`]): measured on a
/// store of 100,000 alerts (78 MiB of live keys and values), one insert per key left the copy at
/// 2.9x live, batches of 1,000 keys 2.3x, of 10,000 to 20,000 keys 2.05x, of 50,000 2.4x.
const BATCH_KEYS: usize = 10_000;
const BATCH_BYTES: usize = 16 << 20;

/// What a compaction did.
#[derive(Debug, Clone)]
pub struct Compacted {
    /// Bytes on disk (file sizes, as `du -sb` counts them) before and after.
    pub before: u64,
    pub after: u64,
    /// Bytes of the live keys and values copied, and how many keys.
    pub live: u64,
    pub keys: u64,
    pub took: Duration,
}

/// A copy an interrupted compaction of the store at `path` left beside it, if there is one.
pub(super) fn left_over(path: &Path) -> Option<PathBuf> {
    let scratch = scratch_path(&path.canonicalize().ok()?);
    scratch.exists().then_some(scratch)
}

/// Where the copy is built, beside the store.
fn scratch_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".compact");
    path.with_file_name(name)
}

/// Compacts the sled store at `path` (see the module's text). `cache_bytes` is sled's page
/// cache for both stores while copying.
pub fn compact(path: &Path, cache_bytes: Option<u64>) -> Result<Compacted, Error> {
    let start = Instant::now();
    let io = |at: &Path| {
        let at = at.to_owned();
        move |source| Error::Io { path: at, source }
    };
    if !path.join("db").exists() {
        return Err(io(path)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no sled store here (store.path)",
        )));
    }
    // Beside the directory itself (through a symlink too), so that the two can be exchanged.
    let path = &path.canonicalize().map_err(io(path))?;
    let scratch = scratch_path(path);
    remove_dir(&scratch)?;
    let before = disk_bytes(path).map_err(io(path))?;
    let copied = copy(path, &scratch, cache_bytes)
        .and_then(|c| sync_tree(&scratch).map(|()| c).map_err(io(&scratch)));
    let (live, keys) = match copied {
        Ok(c) => c,
        Err(e) => {
            // A full disk, most likely: the store is as it was; the partial copy goes.
            let _ = remove_dir(&scratch);
            return Err(e);
        }
    };
    // Both stores are closed (`copy` dropped their handles): the copy is complete and durable.
    exchange(path, &scratch)?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io(parent))?;
    remove_dir(&scratch)?;
    Ok(Compacted {
        before,
        after: disk_bytes(path).map_err(io(path))?,
        live,
        keys,
        took: start.elapsed(),
    })
}

/// Copies every tree of the store at `path` into a fresh one at `scratch`, both opened as the
/// daemon opens them, and flushes the copy. Returns the bytes of keys and values and the keys.
fn copy(path: &Path, scratch: &Path, cache_bytes: Option<u64>) -> Result<(u64, u64), Error> {
    let old = open_handles(path, cache_bytes).map_err(|e| {
        // sled says so only in its message (an `Other` I/O error).
        if e.to_string().contains("could not acquire lock") {
            Error::Io {
                path: path.join("db"),
                source: std::io::Error::other(
                    "locked by another process: is the daemon running? Stop it first",
                ),
            }
        } else {
            e
        }
    })?;
    let new = open_handles(scratch, cache_bytes)?;
    let mut copied = (0u64, 0u64);
    for name in old.db.tree_names() {
        let (from, to) = (old.db.open_tree(&name)?, new.db.open_tree(&name)?);
        let (mut batch, mut keys, mut bytes) = (sled::Batch::default(), 0, 0);
        for kv in from.iter() {
            let (k, v) = kv?;
            let size = k.len() + v.len();
            copied.0 += size as u64;
            copied.1 += 1;
            batch.insert(k, v);
            (keys, bytes) = (keys + 1, bytes + size);
            if keys == BATCH_KEYS || bytes >= BATCH_BYTES {
                to.apply_batch(std::mem::take(&mut batch))?;
                (keys, bytes) = (0, 0);
            }
        }
        to.apply_batch(batch)?;
    }
    // The copy's sled counts ids from 0 again: its ids are offset past every id the store
    // handed out (sled's counter is ahead of all of them, `open_handles`).
    let next = old.db.generate_id()? + old.id_offset;
    new.tree
        .insert(super::ID_OFFSET_KEY, &next.to_be_bytes()[..])?;
    new.db.flush()?;
    Ok(copied)
}

/// Swaps the directories `a` and `b` in one step.
fn exchange(a: &Path, b: &Path) -> Result<(), Error> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("a path has no NUL");
    let (ca, cb) = (c(a), c(b));
    // SAFETY: two NUL-terminated paths, relative to the working directory.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::Io {
            path: a.to_owned(),
            source: std::io::Error::last_os_error(),
        })
    }
}

/// Removes a directory tree if it is there.
fn remove_dir(path: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Syncs every file and directory under `path`, and `path` itself.
fn sync_tree(path: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            std::fs::File::open(entry.path())?.sync_all()?;
        }
    }
    std::fs::File::open(path)?.sync_all()
}

/// The sizes of the files under `path`, as `du -sb` adds them.
fn disk_bytes(path: &Path) -> std::io::Result<u64> {
    let mut total = std::fs::metadata(path)?.len();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            disk_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each tree's name and its keys and values, in order.
    type Contents = Vec<(Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>)>;

    /// `f` once sled's lock on the store it opens is free: sled's I/O threads keep the store
    /// locked for a moment after its last handle in this process is dropped.
    fn when_unlocked<T>(mut f: impl FnMut() -> Result<T, Error>) -> T {
        let started = std::time::Instant::now();
        loop {
            match f() {
                Err(e)
                    if ["could not acquire lock", "locked by another process"]
                        .iter()
                        .any(|m| e.to_string().contains(m))
                        && started.elapsed() < Duration::from_secs(10) =>
                {
                    std::thread::sleep(Duration::from_millis(20))
                }
                done => return done.unwrap(),
            }
        }
    }

    fn contents(path: &Path) -> Contents {
        let db = when_unlocked(|| Ok(sled::Config::new().path(path).open()?));
        let mut names = db.tree_names();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                let tree = db.open_tree(&name).unwrap();
                let kvs = tree
                    .iter()
                    .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                    .collect();
                (name.to_vec(), kvs)
            })
            .collect()
    }

    #[test]
    fn a_compacted_store_holds_the_same_keys_in_less_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        {
            let db = sled::Config::new().path(&path).open().unwrap();
            let tree = db.open_tree("siren").unwrap();
            // Rewritten values and removed keys: what sled keeps on disk after them is dead.
            for round in 0..20u32 {
                for k in 0..500u32 {
                    tree.insert(k.to_be_bytes(), vec![round as u8; 300])
                        .unwrap();
                }
                db.flush().unwrap();
            }
            for k in (0..500u32).step_by(2) {
                tree.remove(k.to_be_bytes()).unwrap();
            }
            db.insert("in the default tree", "too").unwrap();
            db.flush().unwrap();
        }
        let was = contents(&path);
        // A copy left by a crashed run is replaced.
        std::fs::create_dir_all(scratch_path(&path).join("junk")).unwrap();

        let done = when_unlocked(|| compact(&path, None));

        // The same keys, and the offset of the copy's ids.
        let mut now = contents(&path);
        let siren = &mut now.iter_mut().find(|(n, _)| n == b"siren").unwrap().1;
        siren.retain(|(k, _)| k != super::super::ID_OFFSET_KEY);
        assert_eq!(now, was);
        assert_eq!(done.keys, 251);
        assert!(done.after < done.before, "{done:?}");
        assert!(!scratch_path(&path).exists());
    }

    /// A fresh sled counts its ids from 0: the compacted store's ids must still be above every
    /// id the store handed out, or new entries and alerts would overwrite old ones.
    #[test]
    fn ids_after_a_compaction_are_above_every_id_before() {
        use super::super::engine::Engine;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let next_id = |h: &super::super::Handles| {
            let mut txn =
                super::super::txn::Txn::new(super::super::view::View::plain(&h.tree), &h.db);
            txn.id_offset = h.id_offset;
            txn.generate_id().unwrap()
        };
        let mut last = 0;
        for _ in 0..2 {
            let h = open_handles(&path, None).unwrap();
            last = (0..1000).map(|_| next_id(&h)).max().unwrap().max(last);
            h.tree.insert("Akey", "value").unwrap();
            drop(h);
            when_unlocked(|| compact(&path, None));
            let h = open_handles(&path, None).unwrap();
            assert!(next_id(&h) > last, "compacted twice as well");
        }
    }

    #[test]
    fn compaction_refuses_a_store_in_use_and_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let open = sled::Config::new().path(&path).open().unwrap();
        let e = compact(&path, None).unwrap_err().to_string();
        assert!(e.contains("locked by another process"), "{e}");
        drop(open);
        let e = compact(&dir.path().join("none"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no sled store here"), "{e}");
    }
}
