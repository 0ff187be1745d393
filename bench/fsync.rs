//! The disk's own durable-write reference for `bench/run`: `pwrite` of one message-sized block
//! followed by `fdatasync`, over and over, on a file in the directory under test; prints the
//! rate and the p50/p99 latency of one write+sync. Nothing buffered can commit faster than this.
//! Then the same for the write Siren's journal makes (`src/store/journal.rs`): one 4 KiB
//! aligned `pwrite` per record on a handle opened with `O_DIRECT | O_DSYNC`, durable when it
//! returns (0 0 0 where the filesystem refuses direct I/O).
//! Run: `cargo run --release --example fsync -- <directory> [writes, default 2000] [bytes, 2048]`.
//!
//! The file is preallocated and each write goes to the next block, as an append-only journal
//! in a preallocated file would: the sync then has only the data to persist, no size change.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: fsync <directory> [writes] [bytes]"),
    );
    let writes: usize = args.next().map_or(2000, |n| n.parse().expect("writes"));
    let bytes: usize = args.next().map_or(2048, |n| n.parse().expect("bytes"));
    let path = dir.join("fsync-bench.dat");
    let buffered = timed(&path, writes, bytes, false)?;
    let direct = timed(&path, writes, 4096, true).unwrap_or_default();
    std::fs::remove_file(&path)?;
    // One line for bench/run: syncs/s, p50 ms, p99 ms; then the same for the direct writes.
    println!("{} {}", line(&buffered), line(&direct));
    Ok(())
}

/// The latency of each of `writes` durable writes of `bytes` to the next block of a
/// preallocated file, and the time they took in all.
fn timed(
    path: &std::path::Path,
    writes: usize,
    bytes: usize,
    direct: bool,
) -> std::io::Result<(Vec<Duration>, Duration)> {
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    // Preallocate with real blocks (written and synced), so the timed syncs change no metadata.
    let block = vec![0x5au8; bytes];
    file.set_len((writes * bytes) as u64)?;
    for i in 0..writes {
        file.write_at(&block, (i * bytes) as u64)?;
    }
    file.sync_all()?;
    let target = match direct {
        true => File::options()
            .write(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(path)?,
        false => file,
    };
    // A direct write takes a 4 KiB aligned buffer: the aligned place within a larger one.
    let buf = vec![0x5au8; bytes + 4096];
    let at = buf.as_ptr().align_offset(4096);
    let block = &buf[at..at + bytes];
    let mut times: Vec<Duration> = Vec::with_capacity(writes);
    let start = Instant::now();
    for i in 0..writes {
        let t = Instant::now();
        target.write_all_at(block, (i * bytes) as u64)?;
        if !direct {
            target.sync_data()?;
        }
        times.push(t.elapsed());
    }
    let total = start.elapsed();
    times.sort();
    Ok((times, total))
}

fn line((times, total): &(Vec<Duration>, Duration)) -> String {
    if times.is_empty() {
        return "0 0 0".into();
    }
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    format!(
        "{:.0} {:.3} {:.3}",
        times.len() as f64 / total.as_secs_f64(),
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0
    )
}
